"""The call pipeline's pure pieces: barge-in VAD, prompt pre-rendering, the prompt memo, dialplan
path resolution, hang-up side mapping, and how config becomes the telephony settings."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
import structlog.testing

from voicebot.app import load_similarity, resolve_dialplan_path
from voicebot.call.outcome import final_cause, first_leaf, hangup_side
from voicebot.config import HostPort, load_config
from voicebot.dialog.loader import load_dialplan
from voicebot.errors import VoicebotError
from voicebot.meaning import MeaningModelError
from voicebot.media.onset import SpeechOnsetDetector, trim_silence
from voicebot.prompts import MemoSynthesizer, static_prompts
from voicebot.telephony import LegEnded, telephony_config
from voicebot.testing.speech import silence, telephone_speech
from voicebot.tts import PcmAudio

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
FRAME = 320


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def test_vad_reports_speech_onset_near_where_speech_starts() -> None:
    speech = telephone_speech("I would like to talk to an operator")
    detector = SpeechOnsetDetector()
    onset = None
    fed_s = 0.0
    for frame in frames(silence(1000) + speech):
        fed_s += 0.02
        onset = detector.feed(frame, fed_s)
        if onset is not None:
            break
    assert onset is not None
    # espeak's speech starts at 1.0 s (+ its own short lead-in); we decide within ~200 ms of it.
    assert 0.95 <= onset <= 1.3, onset
    assert fed_s - onset <= 0.3, (fed_s, onset)


def test_vad_ignores_silence_and_quiet_noise() -> None:
    detector = SpeechOnsetDetector()
    quiet = bytes(b for _ in range(FRAME // 2) for b in (40, 0))  # a constant offset, far below min_rms
    for i, frame in enumerate(frames(silence(2000)) + [quiet] * 100):
        assert detector.feed(frame, i * 0.02) is None


def test_vad_ignores_frames_of_the_wrong_size() -> None:
    detector = SpeechOnsetDetector(need_frames=1, window_frames=1)
    assert detector.feed(b"\x00" * 10, 0.0) is None


def test_static_prompts_of_the_demo_skip_prompts_with_per_call_values() -> None:
    plan = load_dialplan(REPO / "dialplans/demo.yaml")
    texts = [text for text, _ in static_prompts(plan, {})]
    assert any(text.startswith("Welcome to the voice bot demo.") for text in texts)
    assert "Thank you for calling. Goodbye." in texts
    assert not any("The balance of account" in text for text in texts)  # needs the webhook's answer
    assert len(texts) == len(set(texts))


def test_static_prompts_use_the_calls_variables() -> None:
    plan = load_dialplan(REPO / "dialplans/reminder.yaml")
    texts = [text for text, _ in static_prompts(plan, {"name": "Alice"})]
    assert any(text.startswith("Hello Alice, this is the clinic calling") for text in texts)


def telephone_speech_stub(seed: int) -> bytes:
    """100 ms of a loud square wave (distinct per seed): stands in for speech where content is moot."""
    period = 8 + seed
    return b"".join((8000 if (i // period) % 2 else -8000).to_bytes(2, "little", signed=True)
                    for i in range(800))


class CountingSynthesizer:
    engine_id = "counting-1"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        self.calls.append(text)
        return PcmAudio(silence(50) + telephone_speech_stub(len(self.calls)) + silence(500))


async def test_memo_synthesizes_each_prompt_once_and_evicts_the_oldest() -> None:
    inner = CountingSynthesizer()
    memo = MemoSynthesizer(inner, max_entries=2)
    assert memo.engine_id == "counting-1"
    first = await memo.synthesize("hello", voice="en-us")
    assert await memo.synthesize("hello", voice="en-us") is first
    await memo.synthesize("hello", voice="en-gb")  # another voice is another prompt
    await memo.synthesize("bye", voice="en-us")  # evicts the least recently used: hello/en-us
    await memo.synthesize("hello", voice="en-us")
    assert inner.calls == ["hello", "hello", "bye", "hello"]
    assert (memo.hits, memo.misses) == (1, 4)


async def test_memo_keeps_prompts_with_their_silent_edges_trimmed() -> None:
    audio = await MemoSynthesizer(CountingSynthesizer()).synthesize("hi", voice="en-us")
    # 50 ms silence + 100 ms sound + 500 ms silence -> 10 ms + 100 ms + 120 ms
    assert audio.duration_s == pytest.approx(0.23, abs=0.011)


def test_trim_silence_keeps_the_speech_and_short_edges() -> None:
    speech = telephone_speech("Thank you for calling. Goodbye.")
    trimmed = trim_silence(silence(500) + speech + silence(800))
    loud = trim_silence(speech, keep_lead_ms=0, keep_tail_ms=0)
    assert loud in trimmed  # nothing audible is cut
    lead_ms = trimmed.index(loud) / 16
    tail_ms = (len(trimmed) - trimmed.index(loud) - len(loud)) / 16
    assert 0 < lead_ms <= 20 and 100 <= tail_ms <= 140, (lead_ms, tail_ms)
    assert trim_silence(silence(300)) == silence(300)  # nothing to keep: left alone
    assert trim_silence(b"") == b""


def test_relative_dialplan_path_resolves_from_the_checkout(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = resolve_dialplan_path(Path("dialplans/demo.yaml"))
    assert resolved == REPO / "dialplans/demo.yaml" and resolved.exists()
    (tmp_path / "dialplans").mkdir()
    (tmp_path / "dialplans/demo.yaml").write_text("dialplan: mine\n")
    assert resolve_dialplan_path(Path("dialplans/demo.yaml")) == Path("dialplans/demo.yaml")  # cwd wins
    assert resolve_dialplan_path(Path("nowhere.yaml")) == Path("nowhere.yaml")  # the loader reports it


@pytest.mark.parametrize(("ended", "robot", "side"), [
    (LegEnded("bye", "remote"), False, "caller"),
    (LegEnded("bye", "local"), True, "robot"),
    (LegEnded("shutdown", "local"), False, "robot"),
    (LegEnded("rtp-timeout", "local"), False, "network"),
    (LegEnded("ack-timeout", "remote"), False, "network"),
    (LegEnded("cancelled", "remote"), False, "caller"),
])
def test_hangup_side(ended: LegEnded, robot: bool, side: str) -> None:
    assert hangup_side(ended, robot) == side


@pytest.mark.parametrize(("ended", "error", "robot", "expected"), [
    (LegEnded("bye", "remote"), None, None, ("bye", "caller")),
    (LegEnded("bye", "local"), None, "dialplan hangup", ("bye: dialplan hangup", "robot")),
    (LegEnded("bye", "local"), None, "transferred", ("bye: transferred", "robot")),
    (LegEnded("shutdown", "local"), None, None, ("shutdown", "robot")),
    (LegEnded("rtp-timeout", "local"), None, None, ("rtp-timeout", "network")),
    (LegEnded("failed", "remote", 486, "Busy Here"), None, None, ("failed: 486 Busy Here", "caller")),
    (LegEnded("bye", "remote"), "renderer exploded", None, ("error: renderer exploded", "robot")),
    (None, None, None, ("shutdown", "robot")),
])
def test_final_cause(ended: LegEnded | None, error: str | None, robot: str | None,
                     expected: tuple[str, str]) -> None:
    assert final_cause(ended, error=error, robot_hangup=robot) == expected


def test_first_leaf_unwraps_nested_task_group_errors() -> None:
    error = VoicebotError("recognizer went away")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [error]), ValueError("later")])
    assert first_leaf(group) is error
    assert first_leaf(error) is error


def test_telephony_config_from_the_config() -> None:
    config = load_config(None, env={"VOICEBOT_SIP_INBOUND_PASSWORD": "s3cret"}, overrides={
        "sip.listen": "127.0.0.1:5070", "rtp.ports": "30000-30099", "sip.max_calls": "4",
        "sip.trunk_allow": "192.0.2.0/24", "sip.inbound_auth_user": "trunk"})
    t = telephony_config(config)
    assert (t.sip_host, t.sip_port, t.rtp_host, t.rtp_port_min, t.rtp_port_max) == (
        "127.0.0.1", 5070, "127.0.0.1", 30000, 30099)
    assert t.max_calls == 4 and t.allowed_networks == ("192.0.2.0/24",)
    assert t.inbound_users == (("trunk", "s3cret"),)
    assert t.advertised_host is None


def test_rtp_follows_a_public_sip_listen_address() -> None:
    config = load_config(None, env={}, overrides={"sip.listen": "0.0.0.0:5060",
                                                  "sip.public_address": "203.0.113.10:5060"})
    t = telephony_config(config)
    assert t.rtp_host == "0.0.0.0" and t.advertised_host == "203.0.113.10"
    pinned = dataclasses.replace(config, rtp=dataclasses.replace(config.rtp, host="10.0.0.5"))
    assert telephony_config(pinned).rtp_host == "10.0.0.5"
    sip = dataclasses.replace(config.sip, listen=HostPort("127.0.0.1", 5060))
    loopback = dataclasses.replace(config, sip=sip)
    assert telephony_config(loopback).rtp_host == "127.0.0.1"


def test_a_wildcard_listen_without_public_address_advertises_a_real_address() -> None:
    config = load_config(None, env={}, overrides={"sip.listen": "0.0.0.0:5060"})
    t = telephony_config(config)
    assert t.sip_host == "0.0.0.0" and t.rtp_host == "0.0.0.0"
    assert t.advertised_host is not None and t.advertised_host not in ("0.0.0.0", "")
    ipaddress.ip_address(t.advertised_host)


def test_guesses_by_meaning_off_or_missing_leave_the_app_running(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = load_dialplan(REPO / "dialplans" / "demo.yaml")
    assert load_similarity(False, [plan]) is None

    def missing() -> None:
        raise MeaningModelError("the sentence-embedding model is not installed (...)")

    monkeypatch.setattr("voicebot.app.shared_similarity", missing)
    with structlog.testing.capture_logs() as logs:
        assert load_similarity(True, [plan]) is None
    assert [(e["event"], e["log_level"]) for e in logs] == [("app.meaning_unavailable", "warning")]
    assert "not installed" in logs[0]["error"]


@pytest.mark.model
def test_guesses_by_meaning_embed_every_phrase_of_the_dialplans_at_start() -> None:
    plan = load_dialplan(REPO / "dialplans" / "demo.yaml")
    with structlog.testing.capture_logs() as logs:
        similarity = load_similarity(True, [plan])
    assert similarity is not None
    texts = {t for state in plan.states.values() if state.listen is not None
             for intent in state.listen.intents for t in intent.texts}
    texts |= {t for i in plan.global_intents for t in i.texts}
    assert [e["phrases"] for e in logs if e["event"] == "app.meaning_loaded"] == [len(texts)]
    for text in texts:  # cached: the same vector, no new computation
        assert similarity.phrase_vector(text) is similarity.phrase_vector(text)
