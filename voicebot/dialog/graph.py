"""State diagrams of a dialplan: Graphviz DOT and Mermaid, for people who would rather look.

Edges are labelled with what takes them: an intent (and its DTMF key), a capture, ``no input``
and ``no match`` escalations, a webhook's success/answer/error, or ``then`` after a prompt. Global
handlers hang off one dashed pseudo-node, "any listening state". A state that may ask "Did you
say ...?" gets a diamond ``<state>?`` node: ``unsure`` leads there from the state, ``yes: <intent>``
from there to each intent it may confirm (and ``yes: digits -> <var>`` to a capture that reads its
number back), ``no`` back to the state. On outbound plans the
answering-machine branches (``on_human`` / ``on_machine`` / ``on_unknown``) leave one dotted
pseudo-node, "answered", with the answer type as the label; ``unknown`` is drawn where it goes
even when it only follows ``on_human``. A ``wait_for_beep`` state says "(after the beep)" and a
``record_audio`` state "(recording paused)" / "(recording resumed)".
"""

from __future__ import annotations

from voicebot.dialog.ir import ANSWER_TYPES, Capture, Dialplan, Intent, State

ANY = "__any_listening_state__"
ANSWERED = "__answered__"
CONFIRM_SUFFIX = "?"


def confirm_node(state: str) -> str:
    return f"{state}{CONFIRM_SUFFIX}"


def _confirmable(state: State, plan: Dialplan) -> list[Intent]:
    """The intents (state's, then globals) a guess of which this state would ask about."""
    if state.listen is None:
        return []
    base = state.listen.confirm
    return [i for i in (*state.listen.intents, *plan.global_intents) if base.merged(i.confirm).enabled]


def _read_back(state: State) -> Capture | None:
    """The state's digit capture when it reads a spoken number back before storing it."""
    capture = state.listen.capture if state.listen is not None else None
    return capture if capture is not None and capture.reads_back else None


def _asks(state: State, plan: Dialplan) -> bool:
    """Whether this state may ask "Did you say ...?" at all."""
    return bool(_confirmable(state, plan)) or _read_back(state) is not None


def _intent_label(intent: Intent) -> str:
    return f"{intent.name} / {intent.dtmf}" if intent.dtmf else intent.name


def edges(plan: Dialplan) -> list[tuple[str, str, str]]:
    """(from, to, label) for every transition, in dialplan order."""
    out: list[tuple[str, str, str]] = []
    for state in plan.states.values():
        out += _state_edges(state)
        if _asks(state, plan):
            node = confirm_node(state.name)
            out.append((state.name, node, "unsure"))
            out += [(node, i.goto, f"yes: {i.name}") for i in _confirmable(state, plan)]
            if (capture := _read_back(state)) is not None:
                out.append((node, capture.goto, f"yes: {capture.kind} -> {capture.into}"))
            out.append((node, state.name, "no"))
    for intent in plan.global_intents:
        out.append((ANY, intent.goto, _intent_label(intent)))
    if plan.on_answer:
        for answer in ANSWER_TYPES:
            target = plan.answer_target(answer)
            if target is not None:
                out.append((ANSWERED, target, answer))
    return out


def _state_edges(state: State) -> list[tuple[str, str, str]]:
    name = state.name
    out: list[tuple[str, str, str]] = []
    if state.listen is not None:
        for intent in state.listen.intents:
            out.append((name, intent.goto, _intent_label(intent)))
        capture = state.listen.capture
        if capture is not None:
            out.append((name, capture.goto, f"{capture.kind} -> {capture.into}"))
    if state.no_input is not None:
        out.append((name, state.no_input.goto, f"no input x{state.no_input.retries + 1}"))
    if state.no_match is not None:
        out.append((name, state.no_match.goto, f"no match x{state.no_match.retries + 1}"))
    if state.webhook is not None:
        out.append((name, state.webhook.goto, "webhook ok"))
        for target in sorted(state.webhook.may_goto):
            out.append((name, target, "webhook answer"))
        out.append((name, state.webhook.on_error, "webhook error"))
    if state.transfer is not None and state.transfer.on_error is not None:
        out.append((name, state.transfer.on_error, "transfer failed"))
    if state.goto is not None:
        out.append((name, state.goto, "then"))
    return out


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(plan: Dialplan) -> str:
    lines = [f"digraph {_quote(plan.name)} {{", "  rankdir=LR;", '  node [shape=box, style=rounded];']
    lines.append(f"  __start__ [shape=point]; __start__ -> {_quote(plan.start)};")
    for state in plan.states.values():
        attrs = [f"label={_quote(_node_label(state))}"]
        if state.hangup or state.transfer is not None:
            attrs.append("peripheries=2")
        lines.append(f"  {_quote(state.name)} [{', '.join(attrs)}];")
    if plan.global_intents:
        lines.append(f'  {_quote(ANY)} [label="any listening state", style=dashed];')
    if plan.on_answer:
        lines.append(f'  {_quote(ANSWERED)} [label="answered", shape=ellipse, style=dotted];')
    for state in plan.states.values():
        if _asks(state, plan):
            lines.append(f'  {_quote(confirm_node(state.name))} [label="did you say ...?", shape=diamond];')
    for src, dst, label in edges(plan):
        style = ", style=dashed" if src == ANY else ", style=dotted" if src == ANSWERED else ""
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_quote(label)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_label(state: State) -> str:
    lines = [state.name]
    if state.record_audio is not None:
        lines.append(f"(recording {state.record_audio}d)")
    if state.wait_for_beep is not None:
        lines.append("(after the beep)")
    if state.transfer is not None:
        lines.append(f"(transfer {state.transfer.uri.source})")
    elif state.hangup:
        lines.append("(hang up)")
    elif state.webhook is not None:
        lines.append("(webhook)")
    return "\n".join(lines)


def _mermaid_id(name: str) -> str:
    if name == ANY:
        return "any_listening_state"
    if name == ANSWERED:
        return "answered"
    if name.endswith(CONFIRM_SUFFIX):
        return f"c_{name[:-len(CONFIRM_SUFFIX)]}"
    return f"s_{name}"


def to_mermaid(plan: Dialplan) -> str:
    lines = ["flowchart LR", f"  start(( )) --> {_mermaid_id(plan.start)}"]
    for state in plan.states.values():
        label = _node_label(state).replace("\n", "<br/>").replace('"', "'")
        shape = f'(["{label}"])' if state.hangup or state.transfer is not None else f'["{label}"]'
        lines.append(f"  {_mermaid_id(state.name)}{shape}")
    if plan.global_intents:
        lines.append(f'  {_mermaid_id(ANY)}{{{{"any listening state"}}}}')
    if plan.on_answer:
        lines.append(f'  {_mermaid_id(ANSWERED)}(("answered"))')
    for state in plan.states.values():
        if _asks(state, plan):
            lines.append(f'  {_mermaid_id(confirm_node(state.name))}{{"did you say ...?"}}')
    for src, dst, label in edges(plan):
        arrow = "-.->" if src in (ANY, ANSWERED) else "-->"
        safe = label.replace('"', "'").replace("|", "/")
        lines.append(f'  {_mermaid_id(src)} {arrow}|"{safe}"| {_mermaid_id(dst)}')
    return "\n".join(lines) + "\n"
