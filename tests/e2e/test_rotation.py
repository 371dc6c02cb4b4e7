"""Session rotation on a real call: with the recognizer's per-session audio limit shrunk to 20 s (on
both sides: the embedded server enforces it, the client rotates before it), a call of about 90 s
of numbered sentences with pauses is transcribed with every sentence exactly once, whole, and the
call record lists the several recognizer sessions the call went through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import needs_tools
from tests.e2e.harness import (
    DIALPLANS,
    Pause,
    Say,
    Voicebot,
    call,
    explain,
    new_call_id,
    speech_pcap,
    start_voicebot,
)

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(240)]

# 20 s of audio per session; rotate at a pause within 8 s of it, force it within 3 s. The replay
# buffer stays below 20 - 8 s: at exactly 12 s (which config validation accepts) a new session's
# replay alone leaves 8 s of headroom, so rotation is due again at once and the client opens
# sessions in a loop every few ms (seen here: hundreds of sessions in a 90 s call).
SHRUNK_LIMITS: dict[str, object] = {
    "session_max_audio_s": 20.0, "rotate_at_pause_margin_s": 8.0, "rotate_force_margin_s": 3.0,
    "replay_buffer_s": 8.0,
}
# Everyday sentences with distinct vocabulary (espeak-ng through G.711 is hard for Whisper base on
# isolated words; whole sentences survive).
SENTENCES = [
    "Please check the weather for tomorrow morning.",
    "I would like to pay my electricity bill.",
    "The train to London leaves at seven.",
    "My daughter plays the piano every evening.",
    "Can you send me a copy of the invoice?",
    "We are going to the beach this summer.",
    "The coffee machine in the kitchen is broken.",
    "Please call me back after lunch.",
    "The children are reading books in the library.",
    "The football match starts at eight.",
    "I forgot my password again.",
    "The doctor said I should drink more water.",
    "Our flight was delayed by two hours.",
    "Thank you for your help today.",
]


@pytest.fixture(scope="module")
def dictation_bot(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[Voicebot]:
    bot = start_voicebot(tmp_path_factory.mktemp("rotation-bot"), tts_cache=tts_cache,
                         dialplan=DIALPLANS / "dictation.yaml", recognizer=SHRUNK_LIMITS)
    try:
        yield bot
    finally:
        bot.stop()


def content_words(text: str) -> set[str]:
    """Words of four letters or more, lower case, punctuation dropped."""
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4}


async def test_rotation_recognizes_every_sentence_once_and_whole(
    dictation_bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    script: list[Say | Pause] = [Pause(1000)]
    for sentence in SENTENCES:
        script += [Say(sentence), Pause(3200)]
    script += [Say("Goodbye."), Pause(6000)]
    speech = speech_pcap(pcap_cache, script)
    assert speech.duration_s > 80, speech.duration_s
    call_id = new_call_id("rotation")
    result = await call(dictation_bot, "caller_bye", tmp_path, call_id=call_id,
                        timeout_s=speech.duration_s + 40, pcap=speech.path, pause_ms=0,
                        bye_timeout_ms=int((speech.duration_s + 30) * 1000))
    assert result.returncode == 0, explain(result, tmp_path, "caller_bye", dictation_bot)
    record = dictation_bot.wait_call_ended(call_id)
    utterances = record["utterances"]
    report = "\n".join(f"{u['start_ms']:>6}-{u['end_ms']:<6} {u['session_id'][:8]} {u['text']!r}"
                       for u in utterances)
    report += "\nspoken:\n" + "\n".join(f"{s * 1000:>6.0f}-{e * 1000:<6.0f} {t!r}"
                                         for t, s, e in speech.utterances)
    # The closing "Goodbye." by its place on the timeline, not its text: Whisper base may write it
    # "Bye." (a CI-equivalent run under load), which a text filter counted as a fifteenth sentence.
    _, goodbye_start_s, _ = speech.utterances[-1]
    sentences = [u for u in utterances if u["start_ms"] / 1000 < goodbye_start_s - 0.4]

    # Exactly once: one utterance per sentence spoken, in order (a sentence recognized twice would add
    # an utterance and shift the rest). Identity by shared words: Whisper base mishears some espeak
    # words, so most (not all) utterances must share words with their own sentence, and none may
    # share more with another sentence.
    assert len(sentences) == len(SENTENCES), report
    own = 0
    for index, utterance in enumerate(sentences):
        heard = content_words(utterance["text"])
        overlaps = [len(heard & content_words(s)) for s in SENTENCES]
        assert overlaps[index] == max(overlaps), (
            f"utterance {index} {utterance['text']!r} is closer to another sentence than "
            f"{SENTENCES[index]!r}: {overlaps}\n{report}")
        own += overlaps[index] >= 1
    assert own >= len(SENTENCES) - 2, report

    # None cut: each utterance spans its whole sentence on the call timeline (0 = the first RTP
    # packet): it starts within 0.4 s of the first audible packet and ends no earlier than 0.2 s
    # before the last. A session switch inside a sentence would cut one of the ends.
    for (text, start_s, end_s), utterance in zip(speech.utterances, sentences, strict=False):
        assert abs(utterance["start_ms"] / 1000 - start_s) <= 0.4, (text, start_s, end_s, report)
        assert utterance["end_ms"] / 1000 >= end_s - 0.2, (text, start_s, end_s, report)

    # The call needed several sessions (about 90 s of audio, 20 s each) and none hit the limit.
    sessions = record["stt_sessions"]
    # >= 4: about 90 s of audio at 20 s per session. <= 25: a session gets at least 20 - 8 - 8 s of
    # new audio before it may rotate, so more would mean a rotation loop.
    assert 4 <= len(sessions) <= 25, f"{len(sessions)} sessions: {[s['close_reason'] for s in sessions][:30]}"
    used = {u["session_id"] for u in utterances}
    assert len(used) >= 4, report
    assert used <= {s["session_id"] for s in sessions}
    reasons = [s["close_reason"] for s in sessions]
    assert reasons.count("rotated") >= 3, reasons
    assert not [r for r in reasons if r and r.startswith("server")], reasons
    assert record["summary"]["hangup_side"] == "robot", record["summary"]
