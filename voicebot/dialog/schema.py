"""Dialplan validation: the located YAML tree in, the frozen IR out, or every problem at once.

Each mapping has a fixed set of keys; anything else is an error with a "did you mean" hint.
Values are checked for type and range (timeouts are seconds in (0, 600]); DTMF keys must be
quoted strings, because YAML reads ``1`` as an integer and an unquoted ``#`` as a comment. After
the per-state checks, the whole plan is checked: every ``goto`` names a state, every state is
reachable from ``start``, every ``{variable}`` is declared or captured somewhere. Nothing here
raises on the first problem; :func:`build_dialplan` raises one :class:`DialplanError` with all.
"""

from __future__ import annotations

import difflib
import re
import wave
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from voicebot.dialog.errors import DialplanProblem
from voicebot.dialog.ir import (
    DEFAULT_CONFIRM,
    Capture,
    CaptureKind,
    Confirm,
    ConfirmOverride,
    Dialplan,
    Intent,
    Listen,
    Prompt,
    Retry,
    State,
    Template,
    Transfer,
    Webhook,
    default_confirm_prompt,
)
from voicebot.dialog.match import NO_PHRASES, YES_PHRASES, normalize
from voicebot.dialog.yamlnodes import YMap, YNode, YScalar, YSeq

MAX_TIMEOUT_S = 600.0
DEFAULT_LISTEN_TIMEOUT_S = 5.0
DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
DEFAULT_INTER_DIGIT_TIMEOUT_S = 3.0
DEFAULT_VOICE = "en-us"
# Set by the machine: the call's identity, the current state, and why a webhook/transfer failed.
BUILTIN_VARIABLES = frozenset(
    {"call_id", "caller", "callee", "dialplan", "state", "webhook_error", "transfer_error", "guess"}
)

TOP_KEYS = ("dialplan", "description", "start", "voice", "variables", "globals", "confirm", "states")
STATE_KEYS = (
    "description", "prompt", "audio", "barge_in", "voice", "set", "record", "listen", "no_input",
    "no_match", "confirm", "webhook", "transfer", "hangup", "goto",
)
LISTEN_KEYS = ("intents", "digits", "number", "text", "timeout_s")
INTENT_KEYS = ("phrases", "keywords", "builtin", "dtmf", "confirm", "goto")
CONFIRM_KEYS = ("prompt", "audio", "barge_in", "retries", "act_above", "reject_below")
INTENT_CONFIRM_KEYS = ("say", "prompt", "audio", "barge_in", "act_above", "reject_below")
DIGITS_KEYS = ("into", "min_digits", "max_digits", "terminator", "inter_digit_timeout_s", "goto")
TEXT_KEYS = ("into", "goto")
RETRY_KEYS = ("retries", "prompt", "audio", "barge_in", "goto")
WEBHOOK_KEYS = ("url", "timeout_s", "goto", "on_error", "may_goto")
TRANSFER_KEYS = ("uri", "on_error")
EXITS = ("listen", "webhook", "transfer", "hangup", "goto")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DTMF = re.compile(r"^[0-9*#A-D]$")

T = TypeVar("T")


class _Checker:
    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.problems: list[DialplanProblem] = []
        # (line, where, target) of every goto, checked once all states are known.
        self.targets: list[tuple[int, str, str]] = []
        # (line, where, variable) of every template variable use.
        self.uses: list[tuple[int, str, str]] = []
        self.assigned: set[str] = set()

    def error(self, line: int, message: str) -> None:
        self.problems.append(DialplanProblem(self.file, line, message))

    # -- shapes --------------------------------------------------------------------------------

    def mapping(self, node: YNode, where: str, what: str) -> YMap | None:
        if isinstance(node, YMap):
            return node
        self.error(node.line, f"{where}: {what} must be a mapping of keys, not {_describe(node)}")
        return None

    def keys(self, node: YMap, allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key, (line, _value) in node.items.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
                self.error(line, f"{where}: unknown key '{key}'{hint}")

    def get(self, node: YMap, key: str) -> tuple[int, YNode] | None:
        return node.items.get(key)

    def require(self, node: YMap, key: str, where: str) -> tuple[int, YNode] | None:
        item = node.items.get(key)
        if item is None:
            self.error(node.line, f"{where}: missing required key '{key}'")
        return item

    def string(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.value
        if isinstance(node, YScalar) and node.value is None:
            self.error(line, f"{where}: '{key}' has no value")
        else:
            self.error(line, f"{where}: '{key}' must be a string, not {_describe(node)}")
        return None

    def scalar_text(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        """A string, or a number written without quotes (variables and set values)."""
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, str | int | float) and not isinstance(
            node.value, bool
        ):
            return str(node.value)
        self.error(line, f"{where}: '{key}' must be a string or number, not {_describe(node)}")
        return None

    def boolean(self, item: tuple[int, YNode], where: str, key: str) -> bool | None:
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, bool):
            return node.value
        self.error(line, f"{where}: '{key}' must be true or false, not {_describe(node)}")
        return None

    def seconds(self, item: tuple[int, YNode], where: str, key: str) -> float | None:
        line, node = item
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_TIMEOUT_S:
            return float(value)
        self.error(
            line,
            f"{where}: '{key}' must be a number of seconds greater than 0 and at most "
            f"{MAX_TIMEOUT_S:g}, not {_describe(node)}",
        )
        return None

    def count(self, item: tuple[int, YNode], where: str, key: str, low: int, high: int) -> int | None:
        line, node = item
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.error(
            line, f"{where}: '{key}' must be a whole number from {low} to {high}, not {_describe(node)}"
        )
        return None

    def fraction(self, item: tuple[int, YNode], where: str, key: str) -> float | None:
        line, node = item
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
        self.error(line, f"{where}: '{key}' must be a confidence from 0 to 1, not {_describe(node)}")
        return None

    def dtmf(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        line, node = item
        if isinstance(node, YScalar):
            value = node.value
            if isinstance(value, int) and not isinstance(value, bool):
                self.error(line, f'{where}: DTMF key {key}: {value} must be quoted: write {key}: "{value}"')
                return None
            if value is None:
                self.error(
                    line,
                    f"{where}: '{key}' has no value "
                    f"(an unquoted # starts a YAML comment: write {key}: \"#\")",
                )
                return None
            if isinstance(value, str) and _DTMF.match(value):
                return value
        self.error(
            line, f"{where}: '{key}' must be one DTMF key 0-9, *, # or A-D in quotes, not {_describe(node)}"
        )
        return None

    def state_ref(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        name = self.string(item, where, key)
        if name is not None:
            self.targets.append((item[0], f"{where}: {key}", name))
        return name

    def template(self, item: tuple[int, YNode], where: str, key: str) -> Template | None:
        text = self.scalar_text(item, where, key)
        if text is None:
            return None
        template, message = parse_template(text)
        if template is None:
            self.error(item[0], f"{where}: '{key}': {message}")
            return None
        for name in template.variables:
            self.uses.append((item[0], f"{where}: '{key}'", name))
        return template

    def string_list(self, item: tuple[int, YNode], where: str, key: str) -> list[str]:
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return [node.value]
        if not isinstance(node, YSeq):
            self.error(line, f"{where}: '{key}' must be a list of strings, not {_describe(node)}")
            return []
        out = []
        for child in node.items:
            if isinstance(child, YScalar) and isinstance(child.value, str | int) and not isinstance(
                child.value, bool
            ):
                out.append(str(child.value))
            else:
                self.error(child.line, f"{where}: '{key}' items must be strings, not {_describe(child)}")
        return out

    def variable_name(self, line: int, where: str, name: str) -> bool:
        if _NAME.match(name):
            return True
        self.error(line, f"{where}: '{name}' is not a variable name (letters, digits and _)")
        return False


def _describe(node: YNode) -> str:
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    if node.value is None:
        return "nothing"
    if isinstance(node.value, bool):
        return f"{str(node.value).lower()}"
    if isinstance(node.value, str):
        text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
        # One problem, one line: show control characters escaped.
        return "'" + text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"
    return f"{node.value!r}"


def parse_template(text: str) -> tuple[Template | None, str]:
    """``"Hello {name}"`` -> Template; ``{{`` and ``}}`` are literal braces."""
    literals: list[str] = []
    variables: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "{" and text.startswith("{{", i):
            buf.append("{")
            i += 2
        elif ch == "}" and text.startswith("}}", i):
            buf.append("}")
            i += 2
        elif ch == "{":
            end = text.find("}", i)
            if end < 0:
                return None, f"unclosed '{{' at character {i + 1} (write {{{{ for a literal brace)"
            name = text[i + 1:end].strip()
            if not _NAME.match(name):
                return None, f"'{{{name}}}' is not a variable name (letters, digits and _)"
            literals.append("".join(buf))
            buf = []
            variables.append(name)
            i = end + 1
        elif ch == "}":
            return None, f"unmatched '}}' at character {i + 1} (write }}}} for a literal brace)"
        else:
            buf.append(ch)
            i += 1
    literals.append("".join(buf))
    return Template(text, tuple(literals), tuple(variables)), ""


def build_dialplan(root: YNode, file: str, base_dir: Path) -> tuple[Dialplan | None, list[DialplanProblem]]:
    """Validate the located tree; returns the IR (None if anything is wrong) and all problems."""
    c = _Checker(file, base_dir)
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
        default_confirm = _confirm(c, item, "top level confirm", voice, DEFAULT_CONFIRM)

    global_intents: list[Intent] = []
    if (item := c.get(top, "globals")) is not None and (gmap := c.mapping(item[1], where, "'globals'")):
        global_intents = _intents(c, gmap, "globals", voice)

    states: dict[str, State] = {}
    states_line = top.line
    if (item := c.require(top, "states", where)) is not None:
        states_line = item[0]
        smap = c.mapping(item[1], where, "'states'")
        if smap is not None:
            if not smap.items:
                c.error(states_line, "top level: 'states' is empty; a dialplan needs at least one state")
            for state_name, (line, node) in smap.items.items():
                if not _NAME.match(state_name):
                    c.error(line, f"state '{state_name}': state names are letters, digits and _")
                state = _state(c, state_name, line, node, voice, default_confirm)
                if state is not None:
                    states[state_name] = state

    start = ""
    start_line = top.line
    if (item := c.require(top, "start", where)) is not None:
        start_line = item[0]
        start = c.string(item, where, "start") or ""

    _check_plan(c, states, _state_lines(top), start, start_line, global_intents, variables)
    if c.problems:
        return None, c.problems
    plan = Dialplan(
        name=name, source=file, start=start, voice=voice, variables=variables, states=states,
        global_intents=tuple(global_intents),
    )
    return plan, []


def _state_lines(top: YMap) -> dict[str, int]:
    """State names with their lines, even for states that failed validation."""
    item = top.items.get("states")
    if item is None or not isinstance(item[1], YMap):
        return {}
    return {name: line for name, (line, _node) in item[1].items.items()}


def _check_plan(
    c: _Checker,
    states: dict[str, State],
    state_lines: dict[str, int],
    start: str,
    start_line: int,
    global_intents: list[Intent],
    variables: dict[str, str],
) -> None:
    names = list(state_lines)
    if start and start not in state_lines:
        c.error(start_line, f"top level: start state '{start}' is not a state{_did_you_mean(start, names)}")
    for line, where, target in c.targets:
        if target not in state_lines:
            c.error(line, f"{where} '{target}' is not a state{_did_you_mean(target, names)}")
    # Reachability: from start, plus the global handlers' targets (they fire in any listening state).
    if start in states:
        seen: set[str] = set()
        todo = [start] + [i.goto for i in global_intents]
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
                f"{where} uses unknown variable '{var}'{_did_you_mean(var, sorted(known))} "
                f"(declare it under 'variables:')",
            )


def _check_silent_loops(c: _Checker, states: dict[str, State]) -> None:
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


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _prompt(c: _Checker, node: YMap, where: str, voice: str, default_barge_in: bool) -> Prompt | None:
    text_item = c.get(node, "prompt")
    audio_item = c.get(node, "audio")
    barge_in = default_barge_in
    if (item := c.get(node, "barge_in")) is not None:
        barge_in = _or(c.boolean(item, where, "barge_in"), barge_in)
    if text_item is not None and audio_item is not None:
        c.error(audio_item[0], f"{where}: give either 'prompt' (text) or 'audio' (a WAV file), not both")
        return None
    if text_item is not None:
        template = c.template(text_item, where, "prompt")
        return Prompt(template, None, barge_in, voice) if template is not None else None
    if audio_item is not None:
        rel = c.string(audio_item, where, "audio")
        if rel is None:
            return None
        path = (c.base_dir / rel).resolve()
        problem = _check_wav(path)
        if problem:
            c.error(audio_item[0], f"{where}: audio file '{rel}' {problem}")
            return None
        return Prompt(None, path, barge_in, voice)
    return None


def _check_wav(path: Path) -> str:
    """Why ``path`` cannot be an audio prompt, or ''. (Decoding happens once, at dialplan load.)"""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() not in (1, 2):
                return f"has {w.getnchannels()} channels; use mono or stereo"
    except FileNotFoundError:
        return "does not exist"
    except (wave.Error, EOFError) as exc:
        return f"is not a PCM WAV file ({exc})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return ""


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _state(
    c: _Checker, name: str, line: int, node: YNode, default_voice: str, default_confirm: Confirm
) -> State | None:
    where = f"state '{name}'"
    smap = c.mapping(node, where, "a state")
    if smap is None:
        return None
    before = len(c.problems)
    c.keys(smap, STATE_KEYS, where)
    voice = default_voice
    if (item := c.get(smap, "voice")) is not None:
        voice = c.string(item, where, "voice") or voice
    if (item := c.get(smap, "description")) is not None:
        c.string(item, where, "description")
    prompt = _prompt(c, smap, where, voice, default_barge_in=True)
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
        listen = _listen(c, item, where, voice)
    confirm = default_confirm
    if (item := c.get(smap, "confirm")) is not None:
        if "listen" not in smap.items:
            c.error(item[0], f"{where}: 'confirm' only makes sense in a state that listens")
        confirm = _confirm(c, item, f"{where} confirm", voice, default_confirm)
    if listen is not None:
        if confirm.prompt is None:
            confirm = replace(confirm, prompt=default_confirm_prompt(voice))
        listen = replace(listen, confirm=confirm)
    no_input = _retry(c, smap, "no_input", where, voice)
    no_match = _retry(c, smap, "no_match", where, voice)
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
    if len(c.problems) > before:
        return None
    return State(
        name=name, line=line, prompt=prompt, set_vars=set_vars, record=record, listen=listen,
        no_input=no_input, no_match=no_match, webhook=webhook, transfer=transfer, hangup=hangup, goto=goto,
    )


def _assignments(
    c: _Checker, smap: YMap, key: str, where: str, *, assigns: bool
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


def _confirm(c: _Checker, item: tuple[int, YNode], where: str, voice: str, base: Confirm) -> Confirm:
    """A top-level or state ``confirm``: ``true``/``false`` or settings over ``base``."""
    node = item[1]
    if isinstance(node, YScalar) and isinstance(node.value, bool):
        return replace(base, enabled=node.value)
    cmap = c.mapping(node, where, "'confirm' (true, false or settings)")
    if cmap is None:
        return base
    c.keys(cmap, CONFIRM_KEYS, where)
    override = _confirm_settings(c, cmap, where, voice)
    retries = base.retries
    if (sub := c.get(cmap, "retries")) is not None:
        retries = _or(c.count(sub, where, "retries", 0, 10), retries)
    merged = replace(base.merged(override), enabled=True, retries=retries)
    _check_thresholds(c, cmap, where, merged.act_above, merged.reject_below)
    return merged


def _confirm_settings(c: _Checker, cmap: YMap, where: str, voice: str) -> ConfirmOverride:
    prompt = _prompt(c, cmap, where, voice, default_barge_in=True)
    if c.get(cmap, "barge_in") is not None and prompt is None:
        c.error(cmap.items["barge_in"][0], f"{where}: 'barge_in' without a 'prompt' or 'audio' to interrupt")
    act_above = reject_below = None
    if (sub := c.get(cmap, "act_above")) is not None:
        act_above = c.fraction(sub, where, "act_above")
    if (sub := c.get(cmap, "reject_below")) is not None:
        reject_below = c.fraction(sub, where, "reject_below")
    return ConfirmOverride(enabled=True, prompt=prompt, act_above=act_above, reject_below=reject_below)


def _check_thresholds(c: _Checker, cmap: YMap, where: str, act_above: float, reject_below: float) -> None:
    if reject_below > act_above:
        line = cmap.items.get("reject_below", cmap.items.get("act_above", (cmap.line, cmap)))[0]
        c.error(line, f"{where}: reject_below {reject_below:g} is more than act_above {act_above:g}")


def _intent_confirm(
    c: _Checker, item: tuple[int, YNode], where: str, voice: str
) -> tuple[ConfirmOverride | None, str | None]:
    """An intent's ``confirm``: ``true``/``false`` or settings, and how to ``say`` it."""
    node = item[1]
    if isinstance(node, YScalar) and isinstance(node.value, bool):
        return ConfirmOverride(enabled=node.value), None
    cmap = c.mapping(node, where, "'confirm' (true, false or settings)")
    if cmap is None:
        return None, None
    c.keys(cmap, INTENT_CONFIRM_KEYS, where)
    say = None
    if (sub := c.get(cmap, "say")) is not None:
        say = c.string(sub, where, "say")
    # Settings on an intent tune the question; whether to ask at all stays the state's choice.
    override = replace(_confirm_settings(c, cmap, where, voice), enabled=None)
    if override.act_above is not None and override.reject_below is not None:
        _check_thresholds(c, cmap, where, override.act_above, override.reject_below)
    return override, say


def _intents(c: _Checker, imap: YMap, where: str, voice: str) -> list[Intent]:
    out: list[Intent] = []
    seen_dtmf: dict[str, str] = {}
    for name, (line, node) in imap.items.items():
        iwhere = f"{where} intent '{name}'"
        spec = c.mapping(node, iwhere, "an intent")
        if spec is None:
            continue
        c.keys(spec, INTENT_KEYS, iwhere)
        phrases: list[tuple[str, ...]] = []
        keywords: set[str] = set()
        texts: list[str] = []
        if (item := c.get(spec, "phrases")) is not None:
            for phrase in c.string_list(item, iwhere, "phrases"):
                tokens = normalize(phrase)
                if tokens:
                    phrases.append(tokens)
                    texts.append(phrase.strip())
                else:
                    c.error(item[0], f"{iwhere}: phrase '{phrase}' has no words")
        if (item := c.get(spec, "keywords")) is not None:
            for word in c.string_list(item, iwhere, "keywords"):
                tokens = normalize(word)
                if len(tokens) != 1:
                    c.error(item[0], f"{iwhere}: keyword '{word}' must be one word (use 'phrases' for more)")
                else:
                    keywords.add(tokens[0])
                    texts.append(word.strip())
        builtin = None
        if (item := c.get(spec, "builtin")) is not None:
            node = item[1]
            if isinstance(node, YScalar) and isinstance(node.value, bool):
                # YAML 1.1 reads unquoted yes/no as booleans.
                word = "yes" if node.value else "no"
                c.error(item[0], f'{iwhere}: \'builtin\' must be quoted: write builtin: "{word}"')
                builtin = None
            else:
                builtin = c.string(item, iwhere, "builtin")
            if builtin == "yes":
                phrases += [normalize(p) for p in YES_PHRASES]
                texts += YES_PHRASES
            elif builtin == "no":
                phrases += [normalize(p) for p in NO_PHRASES]
                texts += NO_PHRASES
            elif builtin is not None:
                c.error(item[0], f"{iwhere}: 'builtin' must be 'yes' or 'no', not '{builtin}'")
                builtin = None
        confirm, say = None, None
        if (item := c.get(spec, "confirm")) is not None:
            confirm, say = _intent_confirm(c, item, f"{iwhere} confirm", voice)
        dtmf = None
        if (item := c.get(spec, "dtmf")) is not None:
            dtmf = c.dtmf(item, iwhere, "dtmf")
            if dtmf is not None:
                if dtmf in seen_dtmf:
                    c.error(
                        item[0], f"{iwhere}: DTMF key '{dtmf}' is already used by intent '{seen_dtmf[dtmf]}'"
                    )
                seen_dtmf[dtmf] = name
        if not phrases and not keywords and "dtmf" not in spec.items and "builtin" not in spec.items:
            c.error(line, f"{iwhere}: give at least one of 'phrases', 'keywords', 'builtin' or 'dtmf'")
        goto_item = c.require(spec, "goto", iwhere)
        goto = c.state_ref(goto_item, iwhere, "goto") if goto_item is not None else None
        if goto is not None:
            say = say or (texts[0] if texts else name.replace("_", " "))
            out.append(Intent(name, tuple(phrases), frozenset(keywords), dtmf, goto, line,
                              texts=tuple(texts), say=say, builtin=builtin, confirm=confirm))
    return out


def _listen(c: _Checker, item: tuple[int, YNode], where: str, voice: str) -> Listen | None:
    lwhere = f"{where} listen"
    lmap = c.mapping(item[1], lwhere, "'listen'")
    if lmap is None:
        return None
    c.keys(lmap, LISTEN_KEYS, lwhere)
    intents: list[Intent] = []
    if (sub := c.get(lmap, "intents")) is not None and (imap := c.mapping(sub[1], lwhere, "'intents'")):
        intents = _intents(c, imap, lwhere, voice)
    captures = [k for k in ("digits", "number", "text") if k in lmap.items]
    if len(captures) > 1:
        c.error(lmap.items[captures[1]][0], f"{lwhere}: capture one of digits, number or text, not both "
                f"'{captures[0]}' and '{captures[1]}'")
    if not captures and "intents" not in lmap.items:
        c.error(item[0], f"{lwhere}: give 'intents' and/or one of 'digits', 'number', 'text'")
    capture = _capture(c, lmap, captures[0], lwhere) if captures else None
    timeout_s = DEFAULT_LISTEN_TIMEOUT_S
    if (sub := c.get(lmap, "timeout_s")) is not None:
        timeout_s = _or(c.seconds(sub, lwhere, "timeout_s"), timeout_s)
    return Listen(tuple(intents), capture, timeout_s)


def _capture(c: _Checker, lmap: YMap, kind: str, where: str) -> Capture | None:
    line, node = lmap.items[kind]
    cwhere = f"{where} {kind}"
    spec = c.mapping(node, cwhere, f"'{kind}'")
    if spec is None:
        return None
    c.keys(spec, TEXT_KEYS if kind == "text" else DIGITS_KEYS, cwhere)
    into = None
    if (sub := c.require(spec, "into", cwhere)) is not None:
        into = c.string(sub, cwhere, "into")
        if into is not None and c.variable_name(sub[0], cwhere, into):
            c.assigned.add(into)
    goto_item = c.require(spec, "goto", cwhere)
    goto = c.state_ref(goto_item, cwhere, "goto") if goto_item is not None else None
    min_digits, max_digits, terminator, inter_s = 1, 20, None, DEFAULT_INTER_DIGIT_TIMEOUT_S
    if kind != "text":
        if (sub := c.get(spec, "min_digits")) is not None:
            min_digits = _or(c.count(sub, cwhere, "min_digits", 1, 64), min_digits)
        if (sub := c.get(spec, "max_digits")) is not None:
            max_digits = _or(c.count(sub, cwhere, "max_digits", 1, 64), max_digits)
        if min_digits > max_digits:
            bound_line = spec.items.get("max_digits", spec.items.get("min_digits", (line, spec)))[0]
            c.error(bound_line, f"{cwhere}: min_digits {min_digits} is more than max_digits {max_digits}")
        if (sub := c.get(spec, "terminator")) is not None:
            terminator = c.dtmf(sub, cwhere, "terminator")
            if terminator is not None and terminator.isdigit():
                c.error(sub[0], f"{cwhere}: terminator '{terminator}' is a digit; use '#' or '*'")
        if (sub := c.get(spec, "inter_digit_timeout_s")) is not None:
            inter_s = _or(c.seconds(sub, cwhere, "inter_digit_timeout_s"), inter_s)
    if into is None or goto is None:
        return None
    capture_kind: CaptureKind = "digits" if kind == "digits" else "number" if kind == "number" else "text"
    return Capture(capture_kind, into, goto, min_digits, max_digits, terminator, inter_s)


def _retry(c: _Checker, smap: YMap, key: str, where: str, voice: str) -> Retry | None:
    item = c.get(smap, key)
    if item is None:
        return None
    rwhere = f"{where} {key}"
    rmap = c.mapping(item[1], rwhere, f"'{key}'")
    if rmap is None:
        return None
    c.keys(rmap, RETRY_KEYS, rwhere)
    retries = 0
    if (sub := c.get(rmap, "retries")) is not None:
        retries = _or(c.count(sub, rwhere, "retries", 0, 10), retries)
    prompt = _prompt(c, rmap, rwhere, voice, default_barge_in=True)
    goto_item = c.require(rmap, "goto", rwhere)
    goto = c.state_ref(goto_item, rwhere, "goto") if goto_item is not None else None
    if goto is None:
        return None
    return Retry(retries, prompt, goto)


def _webhook(c: _Checker, item: tuple[int, YNode], where: str) -> Webhook | None:
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
        timeout_s = _or(c.seconds(sub, wwhere, "timeout_s"), timeout_s)
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


def _transfer(c: _Checker, item: tuple[int, YNode], where: str) -> Transfer | None:
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


