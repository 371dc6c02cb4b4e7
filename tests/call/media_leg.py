"""The part of CallLeg the call pipeline uses (CallControl and the recording's media tap), over a
real RtpSession and no socket: tests tick the media clock themselves."""

from __future__ import annotations

from collections.abc import Callable

from voicebot.media.frames import Frame
from voicebot.rtp.session import RemoteMedia, RtpSession

Tap = Callable[[Frame, int | None, bytes | None, bool], None]


class MediaLeg:
    """Plays prompts on a real RtpSession under the pipeline's prompt ids; a subclass ticks it."""

    call_id = "leg-1@test"
    direction = "inbound"
    from_uri = "sip:+15550001111@127.0.0.1"
    to_uri = "sip:bot@127.0.0.1"

    def __init__(self) -> None:
        self.is_ended = False
        self.session = RtpSession(ssrc=7, sequence_number=1, timestamp=0)
        self.session.set_remote(RemoteMedia(("127.0.0.1", 40000), 0, 101, 20))
        self.tap: Tap | None = None
        self._ids: dict[int, int] = {}  # the session's playout id -> the pipeline's prompt id

    def play(self, pcm16_8k: bytes, *, prompt_id: int | None = None) -> int:
        assert prompt_id is not None
        self._ids[self.session.play(pcm16_8k)] = prompt_id
        return prompt_id

    def flush(self) -> int:
        return self.session.flush()

    def hangup(self, *, cause: str | None = None) -> None:
        self.is_ended = True

    def set_media_tap(self, tap: Tap | None) -> None:
        self.tap = tap
