"""The prompts module: one renderer for the dialog (text via the synthesizer chain, audio files
loaded once) and one pre-render path for a dialplan's static prompts."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.loader import load_dialplan, load_dialplan_text
from voicebot.dialog.runner import PromptRenderer
from voicebot.prompts import MemoSynthesizer, Prompts, static_prompts
from voicebot.tts import CachingSynthesizer, PcmAudio
from voicebot.tts.errors import SynthesisError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEMO = load_dialplan(REPO / "dialplans" / "demo.yaml")


class TextSynth:
    """Synthesizes text as its UTF-16 bytes (loud enough not to be trimmed as silence)."""

    engine_id = "text/1"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        self.texts.append(text)
        await asyncio.sleep(0)
        return PcmAudio(text.encode("utf-16-le"))


def play(text: str | None = None, audio_file: Path | None = None, seq: int = 1) -> PlayPrompt:
    return PlayPrompt(seq, text, audio_file, "en-us", True)


def test_prompts_is_the_dialogs_renderer() -> None:
    renderer: PromptRenderer = Prompts(TextSynth())  # mypy checks the Protocol here
    assert isinstance(renderer, Prompts)


async def test_text_prompts_render_to_the_synthesizers_pcm() -> None:
    synth = TextSynth()
    pcm = await Prompts(synth).render(play("Hello"))
    assert pcm == "Hello".encode("utf-16-le")
    assert synth.texts == ["Hello"]


async def test_audio_file_prompts_are_loaded_once_with_their_dialplan(tmp_path: Path) -> None:
    wav = tmp_path / "welcome.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\x00\x20\x00\x20" * 4410)
    plan = load_dialplan_text(
        "dialplan: a\nstart: x\nstates:\n  x: {audio: welcome.wav, hangup: true}\n", base_dir=tmp_path
    )
    synth = TextSynth()
    prompts = Prompts(synth)
    assert await prompts.load_dialplan(plan, {}) == 0  # no text prompt to synthesize
    wav.unlink()  # calls must not touch the file any more
    pcm = await prompts.render(play(audio_file=tmp_path / "welcome.wav"))
    assert len(pcm) == 2 * 800  # 0.1 s, downmixed and resampled to 8 kHz 16-bit
    assert synth.texts == []


async def test_an_audio_file_not_loaded_with_its_dialplan_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="audio prompt was not loaded with its dialplan"):
        await Prompts(TextSynth()).render(play(audio_file=tmp_path / "nowhere.wav"))


async def test_load_dialplan_prerenders_the_static_prompts_once(tmp_path: Path) -> None:
    inner = TextSynth()
    prompts = Prompts(CachingSynthesizer(inner, tmp_path))
    count = await prompts.load_dialplan(DEMO, {})
    expected = static_prompts(DEMO, {})
    assert count == len(inner.texts) == len(expected) == len(set(inner.texts))
    assert sorted(inner.texts) == sorted(text for text, _voice in expected)
    # A call's welcome comes from the cache, not from the synthesizer.
    welcome = next(text for text, _voice in expected if text.startswith("Welcome to the voice bot demo."))
    await prompts.render(play(welcome))
    assert len(inner.texts) == count


async def test_prerender_fills_in_the_calls_known_variables() -> None:
    plan = load_dialplan(REPO / "dialplans" / "reminder.yaml")
    synth = TextSynth()
    await Prompts(synth).load_dialplan(plan, {"name": "Alice"})
    assert any(text.startswith("Hello Alice, this is the clinic calling") for text in synth.texts)


async def test_a_synthesis_error_reaches_the_caller_of_render() -> None:
    class Broken(TextSynth):
        async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
            raise SynthesisError("espeak-ng exited with 1")

    with pytest.raises(SynthesisError, match="espeak-ng exited with 1"):
        await Prompts(MemoSynthesizer(Broken())).render(play("Hi"))
