"""RtpStream and MediaClock over real UDP sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicebot.media.g711 import ULAW
from voicebot.rtp.dtmf import DtmfEnded, DtmfEventReceived
from voicebot.rtp.errors import RtpPortsExhausted, RtpUsageError
from voicebot.rtp.jitter import Frame, FrameKind
from voicebot.rtp.packet import RtpPacket
from voicebot.rtp.session import PlayoutFinished, SessionConfig
from voicebot.rtp.udp import MediaClock, PortAllocator, RtpPortRange, RtpStream
from voicebot.testing.pcap import rtp_from_pcm

pytestmark = pytest.mark.adapter

LOCAL = RtpPortRange("127.0.0.1", 0, 0)


def tone(frames: int) -> bytes:
    count = frames * 160
    return struct.pack(f"<{count}h", *[(i * 211) % 20000 - 10000 for i in range(count)])


class Sink(asyncio.DatagramProtocol):
    """A plain UDP socket that records what arrives, with the arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((asyncio.get_running_loop().time(), data, (addr[0], addr[1])))


@pytest.fixture
async def clock() -> AsyncIterator[MediaClock]:
    media_clock = MediaClock()
    yield media_clock
    media_clock.stop()


async def raw_socket() -> tuple[asyncio.DatagramTransport, Sink, tuple[str, int]]:
    sink = Sink()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: sink, local_addr=("127.0.0.1", 0))
    return transport, sink, transport.get_extra_info("sockname")[:2]


async def collect_audio(stream: RtpStream, samples: int, timeout_s: float) -> bytes:
    audio = b""

    async def read() -> None:
        nonlocal audio
        async for frame in stream.frames():
            if frame.kind is FrameKind.AUDIO:
                audio += frame.pcm
                if len(audio) >= samples * 2:
                    return

    await asyncio.wait_for(read(), timeout_s)
    return audio


async def test_two_streams_exchange_audio_bit_exact(clock: MediaClock) -> None:
    ports = PortAllocator(LOCAL)
    async with RtpStream(clock, ports) as a, RtpStream(clock, ports) as b:
        assert a.local_address is not None and b.local_address is not None
        a.set_remote(b.local_address)
        b.set_remote(a.local_address)
        to_b, to_a = tone(25), tone(15)[::-1]
        a.play(to_b)
        b.play(to_a)
        got_b, got_a = await asyncio.gather(collect_audio(b, len(to_b) // 2, 10),
                                            collect_audio(a, len(to_a) // 2, 10))
        assert got_b[: len(to_b)] == ULAW.decode(ULAW.encode(to_b))
        assert got_a[: len(to_a)] == ULAW.decode(ULAW.encode(to_a))
        assert b.stats().session.jitter.lost == 0


async def test_stranger_ignored_garbage_counted_stream_survives(clock: MediaClock) -> None:
    peer_transport, _, peer_addr = await raw_socket()
    stranger_transport, _, _ = await raw_socket()
    stream = RtpStream(clock, PortAllocator(LOCAL))
    local = await stream.open()
    stream.set_remote(peer_addr)
    pcm = tone(20)
    good = rtp_from_pcm(pcm, payload_type=0)
    intruder = rtp_from_pcm(tone(20)[::-1], payload_type=0, ssrc=0xBAD, sequence_number=7)
    try:
        reader = asyncio.ensure_future(collect_audio(stream, len(pcm) // 2, 10))
        for index, datagram in enumerate(good):
            peer_transport.sendto(datagram, local)
            stranger_transport.sendto(intruder[index], local)
            # Garbage from the peer's own address (asyncio does not send empty datagrams: 1+ bytes).
            peer_transport.sendto(bytes([index % 256]) * (1 + index % 13), local)
            await asyncio.sleep(0.02)
        audio = await reader
        assert audio[: len(pcm)] == ULAW.decode(ULAW.encode(pcm))
        stats = stream.stats().session
        assert stats.dropped_stranger == len(intruder)
        assert stats.dropped_malformed == len(good)
        assert stats.packets_received == len(good)
    finally:
        await stream.close()
        peer_transport.close()
        stranger_transport.close()


async def test_pacing_is_20ms_without_drift(clock: MediaClock) -> None:
    transport, sink, sink_addr = await raw_socket()
    stream = RtpStream(clock, PortAllocator(LOCAL), SessionConfig(comfort_silence=False))
    await stream.open()
    stream.set_remote(sink_addr)
    packets = 100
    try:
        prompt = stream.play(tone(packets))

        async def finished() -> None:
            async for event in stream.events():
                if event == PlayoutFinished(prompt, interrupted=False):
                    return

        await asyncio.wait_for(finished(), packets * 0.02 + 5)
        await asyncio.sleep(0.2)  # the last packet's way through the loopback
    finally:
        await stream.close()
        transport.close()
    times = [t for t, _, _ in sink.received]
    parsed = [RtpPacket.parse(d) for _, d, _ in sink.received]
    assert len(parsed) == packets
    offsets = [(p.timestamp - parsed[0].timestamp) % (1 << 32) for p in parsed]
    assert offsets == [160 * i for i in range(packets)]
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    # Generous: the machine is shared. The median gap is the pacing. Deadline scheduling never runs
    # ahead of real time (so the span is not shorter than nominal), and stalls on a busy machine
    # only add delay, which is bounded loosely here.
    assert 15 <= statistics.median(gaps_ms) <= 25
    span_s = times[-1] - times[0]
    nominal_s = (packets - 1) * 0.02
    assert nominal_s - 0.07 <= span_s <= nominal_s + 1.0


async def test_dtmf_between_streams(clock: MediaClock) -> None:
    ports = PortAllocator(LOCAL)
    async with RtpStream(clock, ports) as a, RtpStream(clock, ports) as b:
        assert a.local_address is not None and b.local_address is not None
        a.set_remote(b.local_address)
        b.set_remote(a.local_address)
        a.send_dtmf("7")
        a.send_dtmf("#")
        seen = []

        async def read() -> None:
            async for event in b.events():
                seen.append(event)
                if len(seen) == 4:
                    return

        await asyncio.wait_for(read(), 5)
        assert [type(e) for e in seen] == [DtmfEventReceived, DtmfEnded, DtmfEventReceived, DtmfEnded]
        assert [e.digit for e in seen] == ["7", "7", "#", "#"]
        assert all(e.duration_ms == 100 for e in seen if isinstance(e, DtmfEnded))


async def test_flush_and_hold_over_the_wire(clock: MediaClock) -> None:
    transport, sink, sink_addr = await raw_socket()
    stream = RtpStream(clock, PortAllocator(LOCAL))
    await stream.open()
    stream.set_remote(sink_addr)
    try:
        prompt = stream.play(tone(500))
        await asyncio.sleep(0.2)
        assert stream.flush() == 1
        first_after_flush = stream.session.next_sequence_number
        await asyncio.sleep(0.2)
        stream.set_remote(sink_addr, send=False)  # re-INVITE to hold
        first_after_hold = stream.session.next_sequence_number
        await asyncio.sleep(0.25)
        events = []

        async def read() -> None:
            async for event in stream.events():
                events.append(event)
                return

        await asyncio.wait_for(read(), 2)
        assert events == [PlayoutFinished(prompt, interrupted=True)]
    finally:
        await stream.close()
        transport.close()
    silence = ULAW.silence(160)
    packets = [RtpPacket.parse(d) for _, d, _ in sink.received]
    seqs = [p.sequence_number for p in packets]
    assert first_after_flush in seqs  # comfort silence followed the flush
    # The packet sent right after flush() is already silence: the prompt stopped within one packet.
    after = packets[seqs.index(first_after_flush):]
    before = packets[: seqs.index(first_after_flush)]
    assert before and all(p.payload != silence for p in before)
    assert after and all(p.payload == silence for p in after)
    assert max(seqs) == (first_after_hold - 1) % 65536  # nothing was sent once on hold


async def test_port_range_even_ports_exhaustion_and_reuse(clock: MediaClock) -> None:
    base = random.Random().randrange(40000, 59000, 2)
    ports = PortAllocator(RtpPortRange("127.0.0.1", base, base + 7))  # even ports base..base+6: four
    streams = []
    try:
        with pytest.raises(RtpPortsExhausted) as info:
            for _ in range(5):
                stream = RtpStream(clock, ports)
                await stream.open()
                streams.append(stream)
        assert f"no free even RTP port in 127.0.0.1:{base}-{base + 7}" in str(info.value)
        assert info.value.retryable
        assert 1 <= len(streams) <= 4  # other processes on this shared machine may hold some
        assert all(s.local_port is not None and s.local_port % 2 == 0 and base <= s.local_port <= base + 6
                   for s in streams)
        freed = streams.pop()
        await freed.close()
        again = RtpStream(clock, ports)
        assert (await again.open())[1] == freed.local_port
        streams.append(again)
    finally:
        for stream in streams:
            await stream.close()


async def test_unread_frames_are_bounded_and_counted(clock: MediaClock) -> None:
    stream = RtpStream(clock, PortAllocator(LOCAL), frame_queue_size=3)
    await stream.open()
    try:
        await asyncio.sleep(0.3)
        assert stream.stats().frames_dropped >= 5
        assert stream._frames.qsize() == 3
    finally:
        await stream.close()


async def test_on_frame_callback_and_clock_stats(clock: MediaClock) -> None:
    frames: list[Frame] = []
    stream = RtpStream(clock, PortAllocator(LOCAL))
    stream.on_frame = frames.append
    await stream.open()
    try:
        await asyncio.sleep(0.3)
    finally:
        await stream.close()
    assert 5 <= len(frames) <= 30
    assert all(len(f.pcm) == 320 for f in frames)
    stats = clock.stats()
    assert stats.ticks >= len(frames)
    assert stats.streams == 0


async def test_loop_stall_skips_forward_without_breaking_sequence(clock: MediaClock) -> None:
    transport, sink, sink_addr = await raw_socket()
    stream = RtpStream(clock, PortAllocator(LOCAL), SessionConfig(comfort_silence=True))
    await stream.open()
    stream.set_remote(sink_addr)
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.25)  # noqa: ASYNC251 -- a deliberate stall of the loop (a blocking call in the app)
        await asyncio.sleep(0.1)
    finally:
        await stream.close()
        transport.close()
    stats = clock.stats()
    assert stats.skipped_ticks >= 5
    parsed = [RtpPacket.parse(d) for _, d, _ in sink.received]
    seqs = [p.sequence_number for p in parsed]
    assert seqs == [(seqs[0] + i) % 65536 for i in range(len(seqs))]
    # Skipped ticks are not sent later in a burst: the receiver sees a delay, not a flood.
    assert len(parsed) <= (0.1 + 0.25 + 0.1) / 0.02 - 5 + 4


async def test_a_released_port_rests_while_others_are_free(clock: MediaClock) -> None:
    """A new call does not get the port a call just left (its late packets could still arrive there,
    from the same trunk address): released ports are tried after every other free one."""
    base = random.Random().randrange(40000, 59000, 2)
    ports = PortAllocator(RtpPortRange("127.0.0.1", base, base + 15))  # eight even ports
    live = [RtpStream(clock, ports), RtpStream(clock, ports)]
    for stream in live:
        await stream.open()
    try:
        for _ in range(12):
            left = live.pop(0)
            await left.close()
            new = RtpStream(clock, ports)
            await new.open()
            live.append(new)
            assert new.local_port != left.local_port
    finally:
        for stream in live:
            await stream.close()


def test_port_range_validation_messages() -> None:
    with pytest.raises(RtpUsageError) as info:
        RtpPortRange("0.0.0.0", 80, 100)
    assert str(info.value) == "RTP port range 80-100 must satisfy 1024 <= min <= max <= 65535"
    with pytest.raises(RtpUsageError, match="RTP port range 10001-10001 holds no even port"):
        RtpPortRange("0.0.0.0", 10001, 10001)


async def test_loop_stall_loses_no_audio_in_either_direction(clock: MediaClock) -> None:
    ports = PortAllocator(LOCAL)
    async with RtpStream(clock, ports) as a, RtpStream(clock, ports) as b:
        assert a.local_address is not None and b.local_address is not None
        a.set_remote(b.local_address)
        b.set_remote(a.local_address)
        pcm = tone(40)
        a.play(pcm)
        reader = asyncio.ensure_future(collect_audio(b, len(pcm) // 2, 15))
        await asyncio.sleep(0.3)
        time.sleep(0.3)  # noqa: ASYNC251 -- a deliberate stall of the loop (a blocking call in the app)
        audio = await reader
        assert clock.stats().skipped_ticks >= 5
        assert audio[: len(pcm)] == ULAW.decode(ULAW.encode(pcm))
        jitter = b.stats().session.jitter
        assert (jitter.lost, jitter.late, jitter.overflow_dropped) == (0, 0, 0)


async def test_ports_are_drawn_at_random_not_in_sequence(clock: MediaClock) -> None:
    # Issue 9 item 1: sequential ports let one call predict the next caller's port.
    base = random.Random().randrange(40000, 58000, 2)
    ports = PortAllocator(RtpPortRange("127.0.0.1", base, base + 998))  # 500 even ports
    bound = []
    for _ in range(6):
        stream = RtpStream(clock, ports)
        await stream.open()
        assert stream.local_port is not None
        bound.append(stream.local_port)
        await stream.close()  # freed again: round-robin would still have moved on by exactly 2
    steps = {b - a for a, b in itertools.pairwise(bound)}
    assert steps != {2} and len(set(bound)) >= 4  # 6 draws of 500: repeats are rare, a sequence impossible
    assert all(p % 2 == 0 and base <= p <= base + 998 for p in bound)


async def test_nat_phone_latches_and_a_sprayer_is_refused_over_real_sockets(clock: MediaClock) -> None:
    # The phone's SDP says 10.0.0.5 but it sends from 127.0.0.1; a stranger sprays valid PCMU too.
    ports = PortAllocator(LOCAL)
    async with RtpStream(clock, ports, SessionConfig(symmetric_latching=True)) as robot:
        assert robot.local_address is not None
        robot.set_remote(("10.0.0.5", 4000))
        phone, phone_sink, phone_addr = await raw_socket()
        sprayer, sprayer_sink, _ = await raw_socket()
        try:
            speech = tone(30)
            # Four packets from the sprayer, each with a new SSRC: never a run, always refused.
            for i, datagram in enumerate(rtp_from_pcm(tone(4), payload_type=0, ssrc=0x5000)):
                spoofed = bytearray(datagram)
                spoofed[8:12] = (0x5000 + i).to_bytes(4, "big")
                sprayer.sendto(bytes(spoofed), robot.local_address)
            async def talk() -> None:
                for datagram in rtp_from_pcm(speech, payload_type=0, ssrc=0x1234):
                    phone.sendto(datagram, robot.local_address)
                    await asyncio.sleep(0.02)  # paced like a phone: a burst would overflow the jitter buffer

            talking = asyncio.create_task(talk())
            audio = await collect_audio(robot, 26 * 160, 5.0)
            await talking
            # Four packets are refused while the phone proves itself; from the fifth on, bit exact.
            assert audio[: 26 * 320] == ULAW.decode(ULAW.encode(speech))[4 * 320 :]
            stats = robot.stats().session
            assert stats.latched_address == phone_addr
            assert stats.dropped_stranger == 4 + 4  # the sprayer's four and the phone's run minus one
            robot.play(tone(5))
            for _ in range(100):
                if phone_sink.received:
                    break
                await asyncio.sleep(0.02)
            assert phone_sink.received and not sprayer_sink.received  # replies go to the phone only
        finally:
            phone.close()
            sprayer.close()


async def test_rtp_socket_reads_the_largest_datagram_whole_from_a_heap_sized_buffer() -> None:
    # asyncio's default recvfrom buffer (256 KiB) is above glibc's initial mmap threshold (128 KiB):
    # mmap + mremap + munmap on every RTP packet. The allocator's sockets read into 65507 bytes, the
    # largest UDP payload, so no datagram is cut short.
    sink = Sink()
    transport, port = await PortAllocator(LOCAL).bind(lambda: sink)
    sender, _, _ = await raw_socket()
    try:
        assert 65507 <= getattr(transport, "max_size", 65507) < 128 * 1024
        largest = bytes(range(256)) * 255 + bytes(range(227))
        sender.sendto(largest, ("127.0.0.1", port))
        for _ in range(100):
            if sink.received:
                break
            await asyncio.sleep(0.01)
        assert [data for _, data, _ in sink.received] == [largest]
    finally:
        sender.close()
        transport.close()


async def test_a_loop_stall_while_the_phone_keeps_sending_loses_no_audio(clock: MediaClock) -> None:
    # A phone does not stop when our event loop stalls: its packets queue in the socket and are read
    # in a burst afterwards. That burst is ours, not network jitter, so it must not be cut as an
    # overflow (which split a caller's "Okay, goodbye" in a loaded CI run).
    ports = PortAllocator(LOCAL)
    async with RtpStream(clock, ports) as robot:
        assert robot.local_address is not None
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        robot.set_remote(phone.getsockname())
        speech = tone(100)  # 2 s
        datagrams = rtp_from_pcm(speech, payload_type=0, ssrc=0x4321)

        def talk() -> None:  # paced by the wall clock, in its own thread: the stall does not reach it
            start = time.monotonic()
            for index, datagram in enumerate(datagrams):
                time.sleep(max(0.0, start + index * 0.02 - time.monotonic()))
                phone.sendto(datagram, robot.local_address)

        heard: list[Frame] = []

        async def listen() -> None:
            async for frame in robot.frames():
                heard.append(frame)

        reader = asyncio.ensure_future(listen())
        talking = asyncio.get_running_loop().run_in_executor(None, talk)
        try:
            await asyncio.sleep(0.5)
            time.sleep(0.35)  # noqa: ASYNC251 -- a deliberate stall of the loop while the phone talks
            await asyncio.sleep(0.3)
            time.sleep(0.35)  # noqa: ASYNC251 -- and a second one before the first is caught up
            await talking
            await asyncio.sleep(0.5)  # the buffered rest plays out
        finally:
            reader.cancel()
            phone.close()
        jitter = robot.stats().session.jitter
        assert (jitter.lost, jitter.late, jitter.overflow_dropped) == (0, 0, 0), jitter
        kinds = [frame.kind for frame in heard]
        first, last = kinds.index(FrameKind.AUDIO), len(kinds) - kinds[::-1].index(FrameKind.AUDIO)
        assert kinds[first:last] == [FrameKind.AUDIO] * 100  # no gap put into the words either
        assert b"".join(frame.pcm for frame in heard[first:last]) == ULAW.decode(ULAW.encode(speech))
