"""What one final result means in a listening state: an intent, digits, free text, or nothing.

The recognizer gives its best text and possibly more hypotheses (the v3 ``alternatives``, with
confidences when it has them). Every hypothesis is tried: against the state's intents, its digit
capture and the global handlers. Each candidate gets a confidence in [0, 1]: the match score
(:func:`voicebot.dialog.match.match_intent`, :func:`~voicebot.dialog.match.parse_digits`) times a
weight for the hypothesis (1 for the best text, :data:`ALTERNATIVE_WEIGHT` for the others, scaled
down when the recognizer itself was less than :data:`CONFIDENT_RECOGNITION` sure). The decision
then follows the intent's ``confirm`` policy: at or above ``act_above`` act, from
``reject_below`` ask "Did you say ...?" (if confirming is enabled), else no match. An intent sure
enough to act on is still asked about when another hypothesis of the same final reads as a
different intent at ``reject_below`` or more (:func:`contested`): the recognizer was torn. So is a
yes of the built-in set read from words that also hold a negation (:func:`doubted_yes`).

Precedence, as before: a state intent to act on; valid digits (the most confident hypothesis);
a global to act on; digits of the wrong length (the machine counts the no-match); free text; the
most confident guess to confirm (state intent on a tie); a guess by meaning (below); nothing.
Pure: the similarity is given.

**A guess the words contradict.** A guess to confirm gives way to another intent when a further
hypothesis *begins* with that intent's phrase (or keyword), goes on, and holds none of the guessed
hypothesis's words (:func:`named_instead`): the embedded recognizer never forces a phrase the model
wrote at the start of a longer decode (only the dialog can tell a filler from a change of meaning),
so the phrase it forced instead is the best of the *other* phrases, and a short one ("that's all")
can win that contest against speech it does not resemble ("Balance in quiet replay." for "balance
enquiry please"). It stays a question, about the intent the caller's own words name.

**Guesses by meaning.** When nothing else matched, a :class:`Similarity` (the app's:
:class:`voicebot.meaning.PhraseSimilarity`, sentence embeddings) may compare what was said with
every intent's phrases and keywords (the state's and the globals'): the closest intent, at a cosine
of at least :data:`MEANING_MIN_SIMILARITY`, is a guess to confirm ("I'm all done" -> "Did you say
goodbye?"), never acted on, and never made from an utterance with a negation word (embeddings do
not see it: "I can make it" sits next to "I can't make it"); a "no," set apart at the start ("No,
that's it.") answers the question just heard and is left out first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from voicebot.dialog.ir import Confirm, Intent, Listen
from voicebot.dialog.match import (
    IntentMatch,
    collapse_repeated_text,
    match_intent,
    negated,
    normalize,
    parse_digits,
)

# A hypothesis after the first is less likely what was said, even when it matches better.
ALTERNATIVE_WEIGHT = 0.9
# A recognizer confidence at or above this does not lower the match's confidence.
CONFIDENT_RECOGNITION = 0.8

# A guess by meaning needs at least this cosine between what was said and one of the intent's
# phrases (all-MiniLM-L6-v2). Chosen on the intent bench's free decodes (docs/intent-bench.md, "A
# semantic fallback, measured"): 0.5 turned 14 of 80 no-match answers into right guesses and asked
# about 5 of 141 off-topic utterances, with no wrong intent; 0.45 recovered 20 but guessed 3 wrong
# intents, 0.6 only 6. Its effect as built: "Sixth round" there.
MEANING_MIN_SIMILARITY = 0.5

Decision = Literal["act", "confirm", "reject"]
Kind = Literal["intent", "digits", "text", "none"]


@dataclass(frozen=True, slots=True)
class Hypothesis:
    text: str
    confidence: float | None = None  # the recognizer's, in [0, 1]; None when it gives none


@dataclass(frozen=True, slots=True)
class Understanding:
    kind: Kind
    decision: Decision
    confidence: float = 0.0
    intent: Intent | None = None
    is_global: bool = False
    digits: str = ""
    text: str = ""
    hypothesis: int = 0  # index of the hypothesis it came from (0: the best text)
    by_meaning: bool = False  # a guess by meaning (nearest_meaning), not by the words


NOTHING = Understanding("none", "reject")


class Similarity(Protocol):
    """Closeness in meaning of what was said to each of some phrases (cosines, -1 .. 1)."""

    def similarities(self, text: str, phrases: Sequence[str]) -> Sequence[float]: ...


def hypothesis_weight(index: int, confidence: float | None) -> float:
    base = 1.0 if index == 0 else ALTERNATIVE_WEIGHT
    if confidence is None:
        return base
    return base * min(1.0, max(confidence, 0.0) / CONFIDENT_RECOGNITION)


def decide(confidence: float, policy: Confirm) -> Decision:
    if confidence >= policy.act_above:
        return "act"
    if confidence >= policy.reject_below and policy.enabled:
        return "confirm"
    return "reject"


def intent_readings(
    hypotheses: Sequence[Hypothesis], intents: Sequence[Intent]
) -> list[tuple[float, int, IntentMatch]]:
    """Each hypothesis's best intent: (weighted confidence, hypothesis index, match)."""
    readings: list[tuple[float, int, IntentMatch]] = []
    for index, hypothesis in enumerate(hypotheses):
        found = match_intent(normalize(hypothesis.text), intents)
        if found is not None:
            confidence = round(found.confidence * hypothesis_weight(index, hypothesis.confidence), 6)
            readings.append((confidence, index, found))
    return readings


def best_intent(
    hypotheses: Sequence[Hypothesis], intents: Sequence[Intent], policy: Confirm, *, is_global: bool
) -> Understanding:
    """The most confident intent over all hypotheses, with the decision its policy gives."""
    best: tuple[float, int, IntentMatch] | None = None
    for confidence, index, found in intent_readings(hypotheses, intents):
        if best is None or (confidence, found.length) > (best[0], best[2].length):
            best = (confidence, index, found)
    if best is None:
        return NOTHING
    confidence, index, found = best
    decision = decide(confidence, policy.merged(found.intent.confirm))
    return Understanding("intent", decision, confidence, found.intent, is_global, hypothesis=index)


def contested(
    chosen: Understanding, hypotheses: Sequence[Hypothesis], intents: Sequence[Intent], policy: Confirm
) -> Understanding:
    """``chosen`` (an intent to act on), unless another hypothesis of the same final reads as a
    different intent surely enough to be asked about (``reject_below``): the recognizer heard two
    things ("i can" and "I can't lurk it"), so acting on either would be a guess. Then it is
    confirmed (or, with confirming off, rejected): the caller settles it in one turn."""
    if chosen.decision != "act" or chosen.intent is None:
        return chosen
    for confidence, index, found in intent_readings(hypotheses, intents):
        if (index != chosen.hypothesis and found.intent is not chosen.intent
                and confidence >= policy.merged(found.intent.confirm).reject_below):
            own = policy.merged(chosen.intent.confirm)
            decision: Decision = "confirm" if own.enabled else "reject"
            return Understanding("intent", decision, chosen.confidence, chosen.intent, chosen.is_global,
                                 hypothesis=chosen.hypothesis)
    return chosen


def doubted_yes(chosen: Understanding, hypotheses: Sequence[Hypothesis], policy: Confirm) -> Understanding:
    """``chosen``, unless it is a yes (the built-in set) to act on read from words that also hold a
    negation: "I'm not sure that works", "yes, I can't wait", "no, that's fine" say yes and something
    against it, and a yes is the answer a negation most often hides in. Then it is confirmed (or,
    with confirming off, rejected)."""
    if (chosen.decision != "act" or chosen.intent is None or chosen.intent.builtin != "yes"
            or not negated(normalize(hypotheses[chosen.hypothesis].text))):
        return chosen
    own = policy.merged(chosen.intent.confirm)
    return replace(chosen, decision="confirm" if own.enabled else "reject")


def opens_with(tokens: Sequence[str], intent: Intent) -> bool:
    """``tokens`` begin with one of the intent's phrases or keywords and go on after it."""
    starts = (*intent.phrases, *((k,) for k in sorted(intent.keywords)))
    return any(0 < len(w) < len(tokens) and tuple(tokens[: len(w)]) == tuple(w) for w in starts)


def named_instead(
    guess: Understanding, hypotheses: Sequence[Hypothesis], listen: Listen, global_intents: Sequence[Intent]
) -> Understanding:
    """``guess`` (an intent to confirm), or a guess at the intent another hypothesis begins with
    by its phrases or keywords and then goes on, when none of the guessed hypothesis's words are in
    it (the module docstring); the state's intents first, then the globals; the first hypothesis
    that qualifies. Never one whose words hold a negation, nor an intent that does not confirm."""
    if guess.intent is None:
        return guess
    guessed = set(normalize(hypotheses[guess.hypothesis].text))
    candidates = [*((i, False) for i in listen.intents), *((i, True) for i in global_intents)]
    for index, hypothesis in enumerate(hypotheses):
        tokens = normalize(hypothesis.text)
        if index == guess.hypothesis or negated(tokens) or guessed.intersection(tokens):
            continue
        for intent, is_global in candidates:
            if (intent is not guess.intent and listen.confirm.merged(intent.confirm).enabled
                    and opens_with(tokens, intent)):
                return Understanding("intent", "confirm", guess.confidence, intent, is_global,
                                     hypothesis=index)
    return guess


def understand(
    hypotheses: Sequence[Hypothesis],
    listen: Listen,
    global_intents: Sequence[Intent],
    *,
    keyed_digits: str = "",
    similarity: Similarity | None = None,
) -> Understanding:
    """Interpret one final result in a state that listens (see the module docstring)."""
    hypotheses = [h for h in hypotheses if h.text.strip()]
    if not hypotheses:
        return NOTHING
    every_intent = (*listen.intents, *global_intents)
    local = doubted_yes(best_intent(hypotheses, listen.intents, listen.confirm, is_global=False), hypotheses,
                        listen.confirm)
    if local.decision == "act":
        return contested(local, hypotheses, every_intent, listen.confirm)
    capture = listen.capture
    wrong_length: Understanding | None = None
    if capture is not None and capture.kind in ("digits", "number"):
        policy = listen.confirm.merged(capture.confirm) if capture.reads_back else listen.confirm
        valid: Understanding | None = None
        readings: set[str] = set()
        for index, hypothesis in enumerate(hypotheses):
            spoken = parse_digits(hypothesis.text)
            if not spoken.digits:
                continue
            confidence = round(spoken.confidence * hypothesis_weight(index, hypothesis.confidence), 6)
            if confidence < policy.reject_below:
                # The recognizer itself doubted these digits (off-topic speech read as a number,
                # a garbled string): no match, the caller is asked again; never a stored guess.
                continue
            found = Understanding("digits", "act", confidence, digits=spoken.digits, hypothesis=index)
            if capture.min_digits <= len(keyed_digits + spoken.digits) <= capture.max_digits:
                readings.add(spoken.digits)
                if valid is None or found.confidence > valid.confidence:
                    valid = found
            elif wrong_length is None:
                wrong_length = found
        unsure = valid is not None and (valid.confidence < policy.act_above or len(readings) > 1)
        if valid is not None and capture.reads_back and unsure:
            # Read back before storing: a guess, or two hypotheses of one final that read as
            # different valid numbers (the recognizer heard two things).
            return replace(valid, decision="confirm")
        if valid is not None:
            return valid
    glob = best_intent(hypotheses, global_intents, listen.confirm, is_global=True)
    if glob.decision == "act":
        return contested(glob, hypotheses, every_intent, listen.confirm)
    if wrong_length is not None:
        return wrong_length
    if capture is not None and capture.kind == "text":
        # Free text is what the caller said, guesses included ("Operetta" is a name, not a
        # misheard "operator"). Recognizers end utterances with punctuation the caller did not say.
        text = collapse_repeated_text(hypotheses[0].text.strip()).rstrip(".!?").strip()
        return Understanding("text", "act", 1.0, text=text)
    guesses = [u for u in (local, glob) if u.decision == "confirm"]
    if guesses:
        guess = max(guesses, key=lambda u: u.confidence)  # max keeps the first (local) on a tie
        return named_instead(guess, hypotheses, listen, global_intents)
    return nearest_meaning(hypotheses, listen, global_intents, similarity)


# A "no" set apart at the start of an answer ("No, that's it." after "anything else?") answers the
# question the caller just heard and negates nothing after it, as in the matcher ("no, my balance" is
# my balance). Without the recognizer's punctuation it may well negate: "no idea", "no problem".
_ANSWER_PARTICLE = re.compile(r"^\s*(?:no|nope|nah)\s*[,.;:!-]+\s*(?=\w)", re.IGNORECASE)


def answer_words(text: str) -> tuple[str, ...]:
    """The words of ``text`` (normalized) without a "no," that opens it (:data:`_ANSWER_PARTICLE`)."""
    return normalize(_ANSWER_PARTICLE.sub("", text, count=1))


def nearest_meaning(
    hypotheses: Sequence[Hypothesis], listen: Listen, global_intents: Sequence[Intent],
    similarity: Similarity | None,
) -> Understanding:
    """The intent closest in meaning to what was said, as a guess to confirm (the intent's own
    ``confirm`` policy: disabled means no match), or nothing: see the module docstring. Every
    hypothesis is compared; the state's intents win a tie with the globals."""
    if similarity is None:
        return NOTHING
    # Every phrase of every intent that has any, compared in one call (one embedding of what was said).
    sources = ((False, listen.intents), (True, global_intents))
    owned = [(intent, is_global, text) for is_global, intents in sources for intent in intents
             for text in intent.texts]
    phrases = [text for _intent, _is_global, text in owned]
    best: tuple[float, int, Intent, bool] | None = None
    for index, hypothesis in enumerate(hypotheses):
        tokens = answer_words(hypothesis.text)
        if not tokens or negated(tokens) or not phrases:
            continue
        closeness = similarity.similarities(" ".join(tokens), phrases)
        for (intent, is_global, _text), closest in zip(owned, closeness, strict=True):
            if closest >= MEANING_MIN_SIMILARITY and (best is None or closest > best[0]):
                best = (closest, index, intent, is_global)
    if best is None:
        return NOTHING
    closest, index, intent, is_global = best
    policy = listen.confirm.merged(intent.confirm)
    decision: Decision = "confirm" if policy.enabled else "reject"
    return Understanding("intent", decision, round(closest, 6), intent, is_global, hypothesis=index,
                         by_meaning=True)
