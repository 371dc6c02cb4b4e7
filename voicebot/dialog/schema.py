"""Dialplan validation: the located YAML tree in, the frozen IR out, or every problem at once.

Each mapping has a fixed set of keys; anything else is an error with a "did you mean" hint.
Values are checked for type and range (timeouts are seconds in (0, 600]); DTMF keys must be
quoted strings, because YAML reads ``1`` as an integer and an unquoted ``#`` as a comment. After
the per-state checks, the whole plan is checked: every ``goto`` names a state, every state is
reachable from ``start``, every ``{variable}`` is declared or captured somewhere. Nothing here
raises on the first problem; :func:`build_dialplan` raises one :class:`DialplanError` with all.

Split by job: :mod:`voicebot.dialog.checker` reads typed values, :mod:`voicebot.dialog.schema_listen`
checks prompts and what a state listens for, this module checks the top level, each state's other
keys and the plan as a whole.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from voicebot.dialog.checker import NAME_RE, Checker, did_you_mean, or_default, parse_template
from voicebot.dialog.errors import DialplanProblem
from voicebot.dialog.ir import (
    DEFAULT_CONFIRM,
    AnswerType,
    Confirm,
    Dialplan,
    Intent,
    RecordAudio,
    State,
    Template,
    Transfer,
    WaitForBeep,
    Webhook,
    default_confirm_prompt,
)
from voicebot.dialog.schema_listen import (
    parse_confirm,
    parse_intents,
    parse_listen,
    parse_prompt,
    parse_retry,
)
from voicebot.dialog.yamlnodes import YMap, YNode, YScalar

__all__ = ["BUILTIN_VARIABLES", "build_dialplan", "parse_template"]

DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
DEFAULT_VOICE = "en-us"
# Set by the machine: the call's identity, the current state, and why a webhook/transfer failed.
BUILTIN_VARIABLES = frozenset(
    {"call_id", "caller", "callee", "dialplan", "state", "webhook_error", "transfer_error", "guess",
     # Outbound calls with answering-machine detection (see ``on_machine`` and ``wait_for_beep``).
     "answer_type", "amd_reason", "beep_wait"}
)

ANSWER_KEYS = ("on_human", "on_machine", "on_unknown")
TOP_KEYS = (
    "dialplan", "description", "start", "voice", "variables", "globals", "confirm", "states", *ANSWER_KEYS,
)
STATE_KEYS = (
    "description", "prompt", "audio", "barge_in", "voice", "set", "record", "record_audio", "wait_for_beep",
    "listen", "no_input",
    "no_match", "confirm", "webhook", "transfer", "hangup", "goto",
)
WEBHOOK_KEYS = ("url", "timeout_s", "goto", "on_error", "may_goto")
TRANSFER_KEYS = ("uri", "on_error")
# 'record' was taken (call-record entries) before audio recording existed; say which is which.
STATE_KEY_HINTS = {
    key: "did you mean 'record_audio: pause' or 'resume'? 'record' stores call-record entries"
    for key in ("recording", "record_pause", "pause_recording", "resume_recording", "audio_recording")
}
ANSWER_HANDLER_KEYS = ("goto",)
WAIT_FOR_BEEP_KEYS = ("timeout_s", "silence_s")
_ANSWER_OF: dict[str, AnswerType] = {"on_human": "human", "on_machine": "machine", "on_unknown": "unknown"}
EXITS = ("listen", "webhook", "transfer", "hangup", "goto")


def build_dialplan(root: YNode, file: str, base_dir: Path) -> tuple[Dialplan | None, list[DialplanProblem]]:
    """Validate the located tree; returns the IR (None if anything is wrong) and all problems."""
    c = Checker(file, base_dir)
    top = c.mapping(root, "top level", "a dialplan")
    if top is None:
        return None, c.problems
    where = "top level"
    c.keys(top, TOP_KEYS, where)
    name = "dialplan"
    if (item := c.require(top, "dialplan", where)) is not None:
        name = c.string(item, where, "dialplan") or name
    voice = DEFAULT_VOICE
    if (item := c.get(top, "voice")) is not None:
        voice = c.string(item, where, "voice") or voice
    if (item := c.get(top, "description")) is not None:
        c.string(item, where, "description")

    variables: dict[str, str] = {}
    if (item := c.get(top, "variables")) is not None and (vmap := c.mapping(item[1], where, "'variables'")):
        for var, (line, node) in vmap.items.items():
            if c.variable_name(line, "variables", var):
                value = c.scalar_text((line, node), "variables", var)
                if value is not None:
                    variables[var] = value

    default_confirm = DEFAULT_CONFIRM
    if (item := c.get(top, "confirm")) is not None:
        default_confirm = parse_confirm(c, item, "top level confirm", voice, DEFAULT_CONFIRM)

    global_intents: list[Intent] = []
    if (item := c.get(top, "globals")) is not None and (gmap := c.mapping(item[1], where, "'globals'")):
        global_intents = parse_intents(c, gmap, "globals", voice)

    states: dict[str, State] = {}
    states_line = top.line
    if (item := c.require(top, "states", where)) is not None:
        states_line = item[0]
        smap = c.mapping(item[1], where, "'states'")
        if smap is not None:
            if not smap.items:
                c.error(states_line, "top level: 'states' is empty; a dialplan needs at least one state")
            for state_name, (line, node) in smap.items.items():
                if not NAME_RE.match(state_name):
                    c.error(line, f"state '{state_name}': state names are letters, digits and _")
                state = _state(c, state_name, line, node, voice, default_confirm)
                if state is not None:
                    states[state_name] = state

    start = ""
    start_line = top.line
    if (item := c.require(top, "start", where)) is not None:
        start_line = item[0]
        start = c.string(item, where, "start") or ""

    on_answer = _answer_handlers(c, top)
    _check_plan(c, states, _state_lines(top), start, start_line, [*(i.goto for i in global_intents),
                *on_answer.values()], variables)
    if c.problems:
        return None, c.problems
    plan = Dialplan(
        name=name, source=file, start=start, voice=voice, variables=variables, states=states,
        global_intents=tuple(global_intents), on_answer=on_answer,
    )
    return plan, []


def _state_lines(top: YMap) -> dict[str, int]:
    """State names with their lines, even for states that failed validation."""
    item = top.items.get("states")
    if item is None or not isinstance(item[1], YMap):
        return {}
    return {name: line for name, (line, _node) in item[1].items.items()}


def _check_plan(
    c: Checker,
    states: dict[str, State],
    state_lines: dict[str, int],
    start: str,
    start_line: int,
    roots: list[str],
    variables: dict[str, str],
) -> None:
    names = list(state_lines)
    if start and start not in state_lines:
        c.error(start_line, f"top level: start state '{start}' is not a state{did_you_mean(start, names)}")
    for line, where, target in c.targets:
        if target not in state_lines:
            c.error(line, f"{where} '{target}' is not a state{did_you_mean(target, names)}")
    # Reachability: from start, plus the global handlers' targets (they fire in any listening state)
    # and the answer handlers' (they fire when the detector has judged the answer).
    if start in states:
        seen: set[str] = set()
        todo = [start, *roots]
        while todo:
            current = todo.pop()
            if current in seen or current not in states:
                continue
            seen.add(current)
            todo.extend(states[current].targets())
        # Only judge reachability when every state parsed; a broken state hides its edges.
        if len(states) == len(state_lines):
            for state_name, line in state_lines.items():
                if state_name not in seen:
                    c.error(line, f"state '{state_name}' is unreachable from start state '{start}'")
    _check_silent_loops(c, states)
    known = set(variables) | BUILTIN_VARIABLES | c.assigned
    for line, where, var in c.uses:
        if var not in known:
            c.error(
                line,
                f"{where} uses unknown variable '{var}'{did_you_mean(var, sorted(known))} "
                f"(declare it under 'variables:')",
            )


def _check_silent_loops(c: Checker, states: dict[str, State]) -> None:
    """A cycle of plain ``goto`` states without prompts would spin without waiting for anyone."""
    reported: set[str] = set()
    for name in states:
        path: list[str] = []
        current: str | None = name
        while current is not None and current in states and current not in path:
            state = states[current]
            if state.goto is None or state.prompt is not None:
                break
            path.append(current)
            current = state.goto
        if current is not None and current in path and current == name and not reported & set(path):
            reported.update(path)
            cycle = " -> ".join([*path, name])
            c.error(states[name].line, f"state '{name}': goto loop without a prompt or input: {cycle}")


def _state(
    c: Checker, name: str, line: int, node: YNode, default_voice: str, default_confirm: Confirm
) -> State | None:
    where = f"state '{name}'"
    smap = c.mapping(node, where, "a state")
    if smap is None:
        return None
    before = len(c.problems)
    c.keys(smap, STATE_KEYS, where, STATE_KEY_HINTS)
    voice = default_voice
    if (item := c.get(smap, "voice")) is not None:
        voice = c.string(item, where, "voice") or voice
    if (item := c.get(smap, "description")) is not None:
        c.string(item, where, "description")
    prompt = parse_prompt(c, smap, where, voice, default_barge_in=True)
    if c.get(smap, "barge_in") is not None and c.get(smap, "prompt") is None and c.get(smap, "audio") is None:
        c.error(smap.items["barge_in"][0], f"{where}: 'barge_in' without a 'prompt' or 'audio' to interrupt")

    set_vars = _assignments(c, smap, "set", where, assigns=True)
    record = _assignments(c, smap, "record", where, assigns=False)

    exits = [key for key in EXITS if key in smap.items]
    if not exits:
        c.error(line, f"{where}: no way out; give one of {', '.join(EXITS)}")
    elif len(exits) > 1:
        c.error(
            smap.items[exits[1]][0],
            f"{where}: '{exits[0]}' and '{exits[1]}' conflict; a state has exactly one of {', '.join(EXITS)}",
        )

    listen = None
    if (item := c.get(smap, "listen")) is not None:
        listen = parse_listen(c, item, where, voice)
    confirm = default_confirm
    if (item := c.get(smap, "confirm")) is not None:
        if "listen" not in smap.items:
            c.error(item[0], f"{where}: 'confirm' only makes sense in a state that listens")
        confirm = parse_confirm(c, item, f"{where} confirm", voice, default_confirm)
    if listen is not None:
        if confirm.prompt is None:
            confirm = replace(confirm, prompt=default_confirm_prompt(voice))
        listen = replace(listen, confirm=confirm)
    no_input = parse_retry(c, smap, "no_input", where, voice)
    no_match = parse_retry(c, smap, "no_match", where, voice)
    if listen is not None or "listen" in smap.items:
        if no_input is None and "no_input" not in smap.items:
            c.error(
                line, f"{where}: listens but has no 'no_input' (what happens when the caller says nothing)"
            )
        free_text = listen is not None and listen.capture is not None and listen.capture.kind == "text"
        if no_match is None and "no_match" not in smap.items and not free_text:
            c.error(line, f"{where}: listens but has no 'no_match' (what happens when nothing matches)")
    else:
        for key in ("no_input", "no_match"):
            if key in smap.items:
                c.error(smap.items[key][0], f"{where}: '{key}' only makes sense in a state that listens")

    webhook = None
    if (item := c.get(smap, "webhook")) is not None:
        webhook = _webhook(c, item, where)
    transfer = None
    if (item := c.get(smap, "transfer")) is not None:
        transfer = _transfer(c, item, where)
    hangup = False
    if (item := c.get(smap, "hangup")) is not None:
        hangup = bool(c.boolean(item, where, "hangup"))
        if not hangup and item[1] is not None:
            c.error(item[0], f"{where}: 'hangup: false' means nothing; leave the key out")
    goto = None
    if (item := c.get(smap, "goto")) is not None:
        goto = c.state_ref(item, where, "goto")
    wait_for_beep = None
    if (item := c.get(smap, "wait_for_beep")) is not None:
        wait_for_beep = _wait_for_beep(c, item, where)
        if prompt is None and "prompt" not in smap.items and "audio" not in smap.items:
            c.error(item[0],
                    f"{where}: 'wait_for_beep' without a 'prompt' or 'audio' to leave after the beep")
    record_audio: RecordAudio | None = None
    if (item := c.get(smap, "record_audio")) is not None:
        value = c.string(item, where, "record_audio")
        if value == "pause":
            record_audio = "pause"
        elif value == "resume":
            record_audio = "resume"
        elif value is not None:
            c.error(item[0], f"{where}: 'record_audio' must be 'pause' or 'resume', not '{value}'")
    if len(c.problems) > before:
        return None
    return State(
        name=name, line=line, prompt=prompt, set_vars=set_vars, record=record, listen=listen,
        no_input=no_input, no_match=no_match, webhook=webhook, transfer=transfer, hangup=hangup, goto=goto,
        wait_for_beep=wait_for_beep, record_audio=record_audio,
    )


def _assignments(
    c: Checker, smap: YMap, key: str, where: str, *, assigns: bool
) -> tuple[tuple[str, Template], ...]:
    item = c.get(smap, key)
    if item is None:
        return ()
    amap = c.mapping(item[1], where, f"'{key}'")
    if amap is None:
        return ()
    out: list[tuple[str, Template]] = []
    for var, (line, node) in amap.items.items():
        if not c.variable_name(line, f"{where}: {key}", var):
            continue
        template = c.template((line, node), f"{where}: {key}", var)
        if template is not None:
            out.append((var, template))
            if assigns:
                c.assigned.add(var)
    return tuple(out)


def _webhook(c: Checker, item: tuple[int, YNode], where: str) -> Webhook | None:
    wwhere = f"{where} webhook"
    wmap = c.mapping(item[1], wwhere, "'webhook'")
    if wmap is None:
        return None
    c.keys(wmap, WEBHOOK_KEYS, wwhere)
    url = None
    if (sub := c.require(wmap, "url", wwhere)) is not None:
        url = c.template(sub, wwhere, "url")
        if url is not None and not url.source.startswith(("http://", "https://", "builtin:", "{")):
            c.error(
                sub[0], f"{wwhere}: 'url' must start with http://, https:// or builtin:, not '{url.source}'"
            )
    timeout_s = DEFAULT_WEBHOOK_TIMEOUT_S
    if (sub := c.get(wmap, "timeout_s")) is not None:
        timeout_s = or_default(c.seconds(sub, wwhere, "timeout_s"), timeout_s)
    goto = on_error = None
    if (sub := c.require(wmap, "goto", wwhere)) is not None:
        goto = c.state_ref(sub, wwhere, "goto")
    if (sub := c.require(wmap, "on_error", wwhere)) is not None:
        on_error = c.state_ref(sub, wwhere, "on_error")
    may_goto: list[str] = []
    if (sub := c.get(wmap, "may_goto")) is not None:
        for target in c.string_list(sub, wwhere, "may_goto"):
            c.targets.append((sub[0], f"{wwhere}: may_goto", target))
            may_goto.append(target)
    if url is None or goto is None or on_error is None:
        return None
    return Webhook(url, timeout_s, goto, on_error, frozenset(may_goto))


def _transfer(c: Checker, item: tuple[int, YNode], where: str) -> Transfer | None:
    twhere = f"{where} transfer"
    node = item[1]
    on_error = None
    if isinstance(node, YMap):
        c.keys(node, TRANSFER_KEYS, twhere)
        uri_item = c.require(node, "uri", twhere)
        if (sub := c.get(node, "on_error")) is not None:
            on_error = c.state_ref(sub, twhere, "on_error")
    else:
        uri_item = item
    if uri_item is None:
        return None
    uri = c.template(uri_item, twhere, "uri")
    if uri is None:
        return None
    if not uri.source.startswith(("sip:", "sips:", "tel:", "{")):
        c.error(uri_item[0], f"{twhere}: '{uri.source}' is not a SIP URI (sip:user@host, sips: or tel:)")
        return None
    return Transfer(uri, on_error)




def _answer_handlers(c: Checker, top: YMap) -> dict[AnswerType, str]:
    """``on_human`` / ``on_machine`` / ``on_unknown``: each ``{goto: STATE}``."""
    out: dict[AnswerType, str] = {}
    for key in ANSWER_KEYS:
        if (item := c.get(top, key)) is None:
            continue
        where = f"top level {key}"
        node = item[1]
        if isinstance(node, YScalar) and isinstance(node.value, str):
            c.error(item[0], f"top level: '{key}' is a mapping: write {key}: {{goto: {node.value}}}")
            continue
        hmap = c.mapping(node, where, f"'{key}' ({{goto: STATE}})")
        if hmap is None:
            continue
        c.keys(hmap, ANSWER_HANDLER_KEYS, where)
        if (sub := c.require(hmap, "goto", where)) is not None and (goto := c.state_ref(sub, where, "goto")):
            out[_ANSWER_OF[key]] = goto
    return out


def _wait_for_beep(c: Checker, item: tuple[int, YNode], where: str) -> WaitForBeep | None:
    """``wait_for_beep: true`` (the defaults) or ``{timeout_s: 10, silence_s: 2}``."""
    bwhere = f"{where} wait_for_beep"
    node = item[1]
    if isinstance(node, YScalar) and node.value is True:
        return WaitForBeep()
    if isinstance(node, YScalar) and node.value is False:
        c.error(item[0], f"{where}: 'wait_for_beep: false' means nothing; leave the key out")
        return None
    bmap = c.mapping(node, bwhere, "'wait_for_beep' (true or {timeout_s, silence_s})")
    if bmap is None:
        return None
    c.keys(bmap, WAIT_FOR_BEEP_KEYS, bwhere)
    wait = WaitForBeep()
    if (sub := c.get(bmap, "timeout_s")) is not None:
        wait = WaitForBeep(or_default(c.seconds(sub, bwhere, "timeout_s"), wait.timeout_s), wait.silence_s)
    if (sub := c.get(bmap, "silence_s")) is not None:
        wait = WaitForBeep(wait.timeout_s, or_default(c.seconds(sub, bwhere, "silence_s"), wait.silence_s))
    if wait.silence_s >= wait.timeout_s:
        line = bmap.items.get("silence_s", bmap.items.get("timeout_s", (item[0], node)))[0]
        c.error(line, f"{bwhere}: silence_s {wait.silence_s:g} is not less than timeout_s {wait.timeout_s:g} "
                "(the timeout would always come first)")
    return wait
