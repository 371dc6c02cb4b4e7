"""Helpers that drive call legs and observe what they send, for the telephony e2e tests."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from voicebot.media.frames import FrameKind
from voicebot.rtp.packet import RtpPacket
from voicebot.telephony import CallLeg, LegEvent, Telephony


@dataclass
class LegRecord:
    """Everything a leg handed out: frames (concatenated PCM, and each frame's kind), events, in order."""

    leg: CallLeg
    pcm: bytearray = field(default_factory=bytearray)
    frames: int = 0
    kinds: list[FrameKind] = field(default_factory=list)
    events: list[LegEvent] = field(default_factory=list)
    frames_done: bool = False


async def next_leg(telephony: Telephony, timeout_s: float = 15.0) -> CallLeg:
    async def first() -> CallLeg:
        async for leg in telephony.incoming():
            return leg
        raise AssertionError("Telephony stopped before a call arrived")

    return await asyncio.wait_for(first(), timeout_s)


async def record(leg: CallLeg, timeout_s: float = 30.0) -> LegRecord:
    """Read frames() and events() until both end (the leg hung up)."""
    rec = LegRecord(leg)

    async def frames() -> None:
        async for frame in leg.frames():
            assert len(frame.pcm) == 320
            rec.pcm += frame.pcm
            rec.kinds.append(frame.kind)
            rec.frames += 1
        rec.frames_done = True

    async def events() -> None:
        async for event in leg.events():
            rec.events.append(event)

    await asyncio.wait_for(asyncio.gather(frames(), events()), timeout_s)
    return rec


@dataclass(frozen=True, slots=True)
class Captured:
    """One RTP packet our leg sent, as received on the test's socket (``at_s``: loop time)."""

    at_s: float
    packet: RtpPacket


class RtpCapture(asyncio.DatagramProtocol):
    """A UDP socket standing in for the peer's media port: records every RTP packet it receives.

    ``on_packet`` runs synchronously in datagram_received, so a test can react (flush) within the
    same loop iteration the packet arrived in."""

    def __init__(self) -> None:
        self.packets: list[Captured] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.on_packet: object = None
        self.port = 0

    @classmethod
    async def open(cls) -> RtpCapture:
        loop = asyncio.get_running_loop()
        capture = cls()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        await loop.create_datagram_endpoint(lambda: capture, sock=sock)
        capture.port = sock.getsockname()[1]
        return capture

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        captured = Captured(asyncio.get_running_loop().time(), RtpPacket.parse(data))
        self.packets.append(captured)
        if callable(self.on_packet):
            self.on_packet(captured)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
