"""Dialplan validation of what a state listens for: prompts, intents, captures, ``confirm``, retries.

Part of :mod:`voicebot.dialog.schema` (which checks the plan and its states); every function takes
the shared :class:`~voicebot.dialog.checker.Checker` and returns IR or None, recording problems.
"""

from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

from voicebot.dialog.checker import Checker, or_default
from voicebot.dialog.ir import (
    Capture,
    CaptureKind,
    Confirm,
    ConfirmOverride,
    Intent,
    Listen,
    Prompt,
    Retry,
)
from voicebot.dialog.match import NO_PHRASES, YES_PHRASES, normalize
from voicebot.dialog.yamlnodes import YMap, YNode, YScalar

DEFAULT_LISTEN_TIMEOUT_S = 5.0
DEFAULT_INTER_DIGIT_TIMEOUT_S = 3.0
LISTEN_KEYS = ("intents", "digits", "number", "text", "timeout_s")
INTENT_KEYS = ("phrases", "keywords", "builtin", "dtmf", "confirm", "goto")
CONFIRM_KEYS = ("prompt", "audio", "barge_in", "retries", "act_above", "reject_below")
INTENT_CONFIRM_KEYS = ("say", "prompt", "audio", "barge_in", "act_above", "reject_below")
DIGITS_KEYS = ("into", "min_digits", "max_digits", "terminator", "inter_digit_timeout_s", "confirm", "goto")
CAPTURE_CONFIRM_KEYS = ("prompt", "audio", "barge_in", "act_above", "reject_below")
TEXT_KEYS = ("into", "goto")
RETRY_KEYS = ("retries", "prompt", "audio", "barge_in", "goto")


def parse_prompt(c: Checker, node: YMap, where: str, voice: str, default_barge_in: bool) -> Prompt | None:
    text_item = c.get(node, "prompt")
    audio_item = c.get(node, "audio")
    barge_in = default_barge_in
    if (item := c.get(node, "barge_in")) is not None:
        barge_in = or_default(c.boolean(item, where, "barge_in"), barge_in)
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


def parse_confirm(c: Checker, item: tuple[int, YNode], where: str, voice: str, base: Confirm) -> Confirm:
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
        retries = or_default(c.count(sub, where, "retries", 0, 10), retries)
    merged = replace(base.merged(override), enabled=True, retries=retries)
    _check_thresholds(c, cmap, where, merged.act_above, merged.reject_below)
    return merged


def _confirm_settings(c: Checker, cmap: YMap, where: str, voice: str) -> ConfirmOverride:
    prompt = parse_prompt(c, cmap, where, voice, default_barge_in=True)
    if c.get(cmap, "barge_in") is not None and prompt is None:
        c.error(cmap.items["barge_in"][0], f"{where}: 'barge_in' without a 'prompt' or 'audio' to interrupt")
    act_above = reject_below = None
    if (sub := c.get(cmap, "act_above")) is not None:
        act_above = c.fraction(sub, where, "act_above")
    if (sub := c.get(cmap, "reject_below")) is not None:
        reject_below = c.fraction(sub, where, "reject_below")
    return ConfirmOverride(enabled=True, prompt=prompt, act_above=act_above, reject_below=reject_below)


def _check_thresholds(c: Checker, cmap: YMap, where: str, act_above: float, reject_below: float) -> None:
    if reject_below > act_above:
        line = cmap.items.get("reject_below", cmap.items.get("act_above", (cmap.line, cmap)))[0]
        c.error(line, f"{where}: reject_below {reject_below:g} is more than act_above {act_above:g}")


def _confirm_override(
    c: Checker, item: tuple[int, YNode], where: str, voice: str, keys: tuple[str, ...]
) -> tuple[ConfirmOverride | None, YMap | None]:
    """An intent's or a capture's ``confirm``: ``true``/``false``, or settings (``keys``) over the
    state's; the settings' mapping too, for keys of the caller's own."""
    node = item[1]
    if isinstance(node, YScalar) and isinstance(node.value, bool):
        return ConfirmOverride(enabled=node.value), None
    cmap = c.mapping(node, where, "'confirm' (true, false or settings)")
    if cmap is None:
        return None, None
    c.keys(cmap, keys, where)
    override = _confirm_settings(c, cmap, where, voice)
    if override.act_above is not None and override.reject_below is not None:
        _check_thresholds(c, cmap, where, override.act_above, override.reject_below)
    return override, cmap


def _intent_confirm(
    c: Checker, item: tuple[int, YNode], where: str, voice: str
) -> tuple[ConfirmOverride | None, str | None]:
    """An intent's ``confirm``: ``true``/``false`` or settings, and how to ``say`` it."""
    override, cmap = _confirm_override(c, item, where, voice, INTENT_CONFIRM_KEYS)
    if override is None or cmap is None:
        return override, None
    say = None
    if (sub := c.get(cmap, "say")) is not None:
        say = c.string(sub, where, "say")
    # Settings on an intent tune the question; whether to ask at all stays the state's choice.
    return replace(override, enabled=None), say


def parse_intents(c: Checker, imap: YMap, where: str, voice: str) -> list[Intent]:
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


def parse_listen(c: Checker, item: tuple[int, YNode], where: str, voice: str) -> Listen | None:
    lwhere = f"{where} listen"
    lmap = c.mapping(item[1], lwhere, "'listen'")
    if lmap is None:
        return None
    c.keys(lmap, LISTEN_KEYS, lwhere)
    intents: list[Intent] = []
    if (sub := c.get(lmap, "intents")) is not None and (imap := c.mapping(sub[1], lwhere, "'intents'")):
        intents = parse_intents(c, imap, lwhere, voice)
    captures = [k for k in ("digits", "number", "text") if k in lmap.items]
    if len(captures) > 1:
        c.error(lmap.items[captures[1]][0], f"{lwhere}: capture one of digits, number or text, not both "
                f"'{captures[0]}' and '{captures[1]}'")
    if not captures and "intents" not in lmap.items:
        c.error(item[0], f"{lwhere}: give 'intents' and/or one of 'digits', 'number', 'text'")
    capture = _capture(c, lmap, captures[0], lwhere, voice) if captures else None
    timeout_s = DEFAULT_LISTEN_TIMEOUT_S
    if (sub := c.get(lmap, "timeout_s")) is not None:
        timeout_s = or_default(c.seconds(sub, lwhere, "timeout_s"), timeout_s)
    return Listen(tuple(intents), capture, timeout_s)


def _capture(c: Checker, lmap: YMap, kind: str, where: str, voice: str) -> Capture | None:
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
            min_digits = or_default(c.count(sub, cwhere, "min_digits", 1, 64), min_digits)
        if (sub := c.get(spec, "max_digits")) is not None:
            max_digits = or_default(c.count(sub, cwhere, "max_digits", 1, 64), max_digits)
        if min_digits > max_digits:
            bound_line = spec.items.get("max_digits", spec.items.get("min_digits", (line, spec)))[0]
            c.error(bound_line, f"{cwhere}: min_digits {min_digits} is more than max_digits {max_digits}")
        if (sub := c.get(spec, "terminator")) is not None:
            terminator = c.dtmf(sub, cwhere, "terminator")
            if terminator is not None and terminator.isdigit():
                c.error(sub[0], f"{cwhere}: terminator '{terminator}' is a digit; use '#' or '*'")
        if (sub := c.get(spec, "inter_digit_timeout_s")) is not None:
            inter_s = or_default(c.seconds(sub, cwhere, "inter_digit_timeout_s"), inter_s)
    confirm = None
    if kind != "text" and (sub := c.get(spec, "confirm")) is not None:
        confirm, _settings = _confirm_override(c, sub, f"{cwhere} confirm", voice, CAPTURE_CONFIRM_KEYS)
    if into is None or goto is None:
        return None
    capture_kind: CaptureKind = "digits" if kind == "digits" else "number" if kind == "number" else "text"
    return Capture(capture_kind, into, goto, min_digits, max_digits, terminator, inter_s, confirm)


def parse_retry(c: Checker, smap: YMap, key: str, where: str, voice: str) -> Retry | None:
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
        retries = or_default(c.count(sub, rwhere, "retries", 0, 10), retries)
    prompt = parse_prompt(c, rmap, rwhere, voice, default_barge_in=True)
    goto_item = c.require(rmap, "goto", rwhere)
    goto = c.state_ref(goto_item, rwhere, "goto") if goto_item is not None else None
    if goto is None:
        return None
    return Retry(retries, prompt, goto)

