"""Whole calls with sipp as the peer: what we send on the wire, hang-ups, CANCEL, hold, timeouts,
outbound calls with digest auth, and transfer.

Where the test must see our RTP, the sipp scenario's SDP names a UDP socket of the test
(:class:`~tests.telephony.legs.RtpCapture`) as the caller's media port, so every packet we send is
parsed and time-stamped there. Timing asserts are generous (the machine is shared); the pacing
numbers themselves are measured by bench/sip_bench.py.
"""

from __future__ import annotations

import asyncio
import audioop
import itertools
import random
import shutil
import socket
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sip.peers import free_udp_port, run_sipp
from tests.telephony.conftest import config
from tests.telephony.legs import Captured, LegRecord, RtpCapture, next_leg, record
from tests.telephony.sipp import Pause, Play, Reinvite, Step, run_uac, uac_rejected_scenario, uac_scenario
from voicebot.rtp.errors import RtpPortsExhausted
from voicebot.rtp.packet import serialize_rtp
from voicebot.telephony import (
    CallFailed,
    CallLeg,
    Credentials,
    LegEnded,
    MediaChanged,
    PlaybackFinished,
    Telephony,
    TelephonyError,
)
from voicebot.testing.pcap import UdpDatagram, write_rtp_pcap, write_udp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp comes from scripts/setup"),
]

ULAW_SILENCE = b"\xff" * 160


def noise_prompt(duration_ms: int, seed: int = 7) -> bytes:
    """Loud pseudo-random audio: every 20 ms chunk is distinct, so each packet maps to one offset."""
    rng = random.Random(seed)
    samples = duration_ms * 8
    return b"".join(rng.randint(-12000, 12000).to_bytes(2, "little", signed=True) for _ in range(samples))


def prompt_chunks(prompt: bytes) -> dict[bytes, int]:
    encoded = audioop.lin2ulaw(prompt, 2)
    return {encoded[i:i + 160]: i // 160 for i in range(0, len(encoded), 160)}


def assert_continuous(packets: list[Captured]) -> None:
    """RFC 3550 §5.1: one SSRC, sequence +1 per packet, timestamp +160 per 20 ms packet."""
    assert len({c.packet.ssrc for c in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert (after.packet.sequence_number - before.packet.sequence_number) % 65536 == 1
        assert (after.packet.timestamp - before.packet.timestamp) % (1 << 32) == 160


async def test_prompt_goes_out_as_paced_continuous_rtp(telephony: Telephony, tmp_path: Path) -> None:
    capture = await RtpCapture.open()
    prompt = noise_prompt(1000)
    chunks = prompt_chunks(prompt)
    sipp = asyncio.create_task(run_uac(uac_scenario([Pause(2400)], media_port=capture.port),
                                       tmp_path, telephony.sip_address))
    try:
        leg = await next_leg(telephony)
        await leg.answer()
        recording = asyncio.create_task(record(leg))
        await asyncio.sleep(0.3)  # comfort silence first, so the prompt starts a new talkspurt
        prompt_id = leg.play(prompt)
        rec = await recording
        result = await sipp
    finally:
        capture.close()
    assert result.returncode == 0, result.explain()
    assert PlaybackFinished(prompt_id, interrupted=False) in rec.events
    packets = capture.packets
    assert len(packets) >= 80, f"only {len(packets)} packets in a 2.4 s call"
    assert {c.packet.payload_type for c in packets} == {0}
    assert_continuous(packets)
    kinds = ["silence" if c.packet.payload == ULAW_SILENCE else chunks.get(c.packet.payload, "other")
             for c in packets]
    assert "other" not in kinds
    first = kinds.index(0)
    assert kinds[first:first + len(chunks)] == list(range(len(chunks))), "prompt not sent whole and in order"
    assert set(kinds[:first]) == {"silence"} and set(kinds[first + len(chunks):]) <= {"silence"}
    # RFC 3551 §4.1: marker on the first packet and on the first packet of the prompt's talkspurt.
    assert [i for i, c in enumerate(packets) if c.packet.marker] == [0, first]
    gaps_ms = [(b.at_s - a.at_s) * 1000 for a, b in itertools.pairwise(packets)]
    # Generous: the machine is shared; a stalled loop delays packets (the clock skips, never bursts).
    assert 10 <= statistics.median(gaps_ms) <= 30
    assert max(gaps_ms) < 1000
    mean_ms = (packets[-1].at_s - packets[0].at_s) * 1000 / (len(packets) - 1)
    assert 15 <= mean_ms <= 30, f"mean packet spacing {mean_ms:.1f} ms"


async def test_flush_stops_the_prompt_within_one_packet(telephony: Telephony, tmp_path: Path) -> None:
    capture = await RtpCapture.open()
    prompt = noise_prompt(5000)
    chunks = prompt_chunks(prompt)
    sipp = asyncio.create_task(run_uac(uac_scenario([], media_port=capture.port, end="wait_bye"),
                                       tmp_path, telephony.sip_address))
    flushed_at: list[int] = []
    try:
        leg = await next_leg(telephony)
        await leg.answer()
        recording = asyncio.create_task(record(leg))

        def barge_in(captured: Captured) -> None:
            # React in the same loop iteration the 10th prompt packet arrives in, as the app would
            # on the recognizer's first partial.
            if not flushed_at and chunks.get(captured.packet.payload) == 9:
                flushed_at.append(len(capture.packets) - 1)
                assert leg.flush() == 1

        capture.on_packet = barge_in
        prompt_id = 41  # the caller's own id (the dialog's prompt_seq) travels through to the event
        assert leg.play(prompt, prompt_id=prompt_id) == prompt_id
        for _ in range(200):
            if flushed_at and len(capture.packets) > flushed_at[0] + 20:
                break
            await asyncio.sleep(0.05)
        leg.hangup()
        rec = await recording
        result = await sipp
    finally:
        capture.close()
    assert result.returncode == 0, result.explain()
    assert flushed_at, "the prompt never reached its 10th packet"
    after = capture.packets[flushed_at[0] + 1:]
    prompt_after = [c for c in after if c.packet.payload in chunks]
    assert len(prompt_after) <= 1, f"{len(prompt_after)} prompt packets after flush()"
    assert all(c.packet.payload == ULAW_SILENCE for c in after[len(prompt_after):])
    assert len(after) >= 20
    assert_continuous(capture.packets)
    assert PlaybackFinished(prompt_id, interrupted=True) in rec.events
    assert rec.events[-1] == LegEnded("bye", "local", None, "")
    assert rec.frames_done


async def test_bye_from_us_ends_frames_and_events(telephony: Telephony, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_wait_bye", tmp_path, remote=telephony.sip_address,
                                         local_port=free_udp_port()))
    leg = await next_leg(telephony)
    await leg.answer()
    recording = asyncio.create_task(record(leg))
    await asyncio.sleep(0.3)
    leg.hangup()
    rec = await recording
    assert rec.frames_done and rec.frames >= 5
    assert rec.events == [LegEnded("bye", "local", None, "")]
    assert await leg.ended() == rec.events[-1]
    assert telephony.active_legs == 0
    leg.hangup()  # idempotent once ended
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_bye_from_caller_ends_frames_and_events(telephony: Telephony, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_bye", tmp_path, remote=telephony.sip_address,
                                         local_port=free_udp_port()))
    leg = await next_leg(telephony)
    await leg.answer()
    rec = await record(leg)
    assert rec.frames_done
    assert rec.events == [LegEnded("bye", "remote", None, "")]
    assert telephony.active_legs == 0
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_cancel_before_answer_ends_the_leg_without_media(telephony: Telephony, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_cancel", tmp_path, remote=telephony.sip_address,
                                         local_port=free_udp_port()))
    leg = await next_leg(telephony)
    with pytest.raises(TelephonyError, match="answer"):
        leg.play(b"\x00\x00" * 160)
    leg.ringing()  # sipp's scenario waits for 180, then CANCELs
    rec = await record(leg, timeout_s=15)
    assert rec.frames == 0 and rec.frames_done
    assert rec.events == [LegEnded("cancelled", "remote", 487, "Request Terminated")]
    assert leg.local_rtp_port is None
    with pytest.raises(TelephonyError, match="ended before answer"):
        await leg.answer()
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_hold_pauses_and_unhold_resumes_our_sending(telephony: Telephony, tmp_path: Path) -> None:
    capture = await RtpCapture.open()
    steps: list[Step] = [Pause(600), Reinvite("sendonly"), Pause(1000), Reinvite("sendrecv"), Pause(600)]
    sipp = asyncio.create_task(run_uac(uac_scenario(steps, media_port=capture.port),
                                       tmp_path, telephony.sip_address))
    loop = asyncio.get_running_loop()
    changes: list[tuple[float, MediaChanged]] = []
    try:
        leg = await next_leg(telephony)
        await leg.answer()
        frames = asyncio.create_task(record_frames(leg))
        async for event in leg.events():
            if isinstance(event, MediaChanged):
                changes.append((loop.time(), event))
        await frames
        result = await sipp
    finally:
        capture.close()
    assert result.returncode == 0, result.explain()
    assert [c for _, c in changes] == [MediaChanged(True, "PCMU"), MediaChanged(False, "PCMU")]
    hold_at, unhold_at = changes[0][0], changes[1][0]
    packets = capture.packets
    during = [c for c in packets if hold_at + 0.1 < c.at_s < unhold_at]
    before = [c for c in packets if c.at_s < hold_at]
    resumed = [c for c in packets if c.at_s > unhold_at]
    assert during == [], f"{len(during)} packets sent while on hold"
    assert len(before) >= 10 and len(resumed) >= 10
    # Sending resumes where it stopped: sequence +1, timestamp advanced by the held time (§5.1).
    last, nxt = [c for c in packets if c.at_s <= unhold_at][-1], resumed[0]
    assert (nxt.packet.sequence_number - last.packet.sequence_number) % 65536 == 1
    held_ticks = ((nxt.packet.timestamp - last.packet.timestamp) % (1 << 32)) / 160
    assert held_ticks >= 0.8 * (unhold_at - hold_at) / 0.02


async def record_frames(leg: CallLeg) -> int:
    count = 0
    async for _ in leg.frames():
        count += 1
    return count


async def test_silent_peer_is_hung_up_with_rtp_timeout_but_not_while_held(tmp_path: Path) -> None:
    async with Telephony(config(rtp_timeout_s=2.0)) as telephony:
        steps: list[Step] = [Pause(300), Reinvite("sendonly"), Pause(3000), Reinvite("sendrecv")]
        sipp = asyncio.create_task(run_uac(uac_scenario(steps, end="wait_bye"), tmp_path,
                                           telephony.sip_address))
        loop = asyncio.get_running_loop()
        leg = await next_leg(telephony)
        await leg.answer()
        frames = asyncio.create_task(record_frames(leg))
        unhold_at = None
        async for event in leg.events():
            if event == MediaChanged(False, "PCMU"):
                unhold_at = loop.time()
        ended_at = loop.time()
        await frames
        result = await sipp
    assert result.returncode == 0, result.explain()
    assert unhold_at is not None, "the leg ended while on hold (3 s held > 2 s timeout)"
    assert await leg.ended() == LegEnded("rtp-timeout", "local", None, "")
    assert 1.5 <= ended_at - unhold_at <= 6.0


@pytest.mark.parametrize("challenge", [401, 407])
async def test_dial_through_digest_challenge(telephony: Telephony, tmp_path: Path, challenge: int) -> None:
    port = free_udp_port()
    sipp = asyncio.create_task(run_sipp(f"uas_auth{challenge}", tmp_path, local_port=port))
    await asyncio.sleep(0.3)  # let sipp bind; our INVITE retransmits anyway
    leg = await telephony.dial(f"sip:callee@127.0.0.1:{port}", credentials=Credentials("bot", "s3cret"),
                               timeout_s=15)
    assert leg.direction == "outbound" and leg.to_uri == f"sip:callee@127.0.0.1:{port}"
    assert leg.negotiation is not None and leg.negotiation.codec == "PCMA"
    frames = asyncio.create_task(record_frames(leg))
    leg.play(noise_prompt(200))
    await asyncio.sleep(0.3)
    leg.hangup()
    assert await asyncio.wait_for(leg.ended(), 10) == LegEnded("bye", "local", None, "")
    assert await frames >= 5
    assert leg.stats().packets_sent >= 5
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_dial_with_wrong_password_fails_and_frees_the_leg(telephony: Telephony, tmp_path: Path) -> None:
    port = free_udp_port()
    sipp = asyncio.create_task(run_sipp("uas_auth401", tmp_path, local_port=port))
    await asyncio.sleep(0.3)
    with pytest.raises(CallFailed) as info:
        await telephony.dial(f"sip:callee@127.0.0.1:{port}", credentials=Credentials("bot", "wrong"),
                             timeout_s=15)
    assert info.value.status_code == 403
    assert telephony.active_legs == 0
    await sipp


async def test_dial_unanswered_times_out_and_cancels(telephony: Telephony) -> None:
    port = free_udp_port()  # nobody listens: our INVITE retransmits, then we give up and CANCEL
    with pytest.raises(CallFailed, match="no answer") as info:
        await telephony.dial(f"sip:callee@127.0.0.1:{port}", timeout_s=1.0)
    assert info.value.retryable and info.value.status_code is None
    assert telephony.active_legs == 0


async def test_transfer_reports_the_notify_outcome(telephony: Telephony, tmp_path: Path) -> None:
    port = free_udp_port()
    sipp = asyncio.create_task(run_sipp("uas_refer", tmp_path, local_port=port))
    await asyncio.sleep(0.3)
    leg = await telephony.dial(f"sip:callee@127.0.0.1:{port}", timeout_s=15)
    result = await leg.transfer("sip:agent@127.0.0.1:5099", timeout_s=15)
    assert (result.status_code, result.reason, result.succeeded) == (200, "OK", True)
    leg.hangup()
    assert (await asyncio.wait_for(leg.ended(), 10)).side == "local"
    sipp_result = await sipp
    assert sipp_result.returncode == 0, sipp_result.explain()


async def test_stop_hangs_up_every_leg_and_ends_incoming(tmp_path: Path) -> None:
    telephony = Telephony(config())
    await telephony.start()
    sipp = asyncio.create_task(run_sipp("uac_wait_bye", tmp_path, remote=telephony.sip_address,
                                         local_port=free_udp_port()))
    leg = await next_leg(telephony)
    await leg.answer()
    recording = asyncio.create_task(record(leg))
    incoming = [x async for x in _incoming_after_stop(telephony)]
    rec = await recording
    assert incoming == []
    assert rec.frames_done and rec.events == [LegEnded("shutdown", "local", None, "")]
    result = await sipp
    assert result.returncode == 0, result.explain()


async def _incoming_after_stop(telephony: Telephony) -> AsyncIterator[CallLeg]:
    """Stop the Telephony, then iterate incoming(): it must end instead of waiting forever."""
    await telephony.stop()
    async for leg in telephony.incoming():
        yield leg


def bind_even_port() -> socket.socket:
    """A UDP socket on a free even port (RTP ports are even, RFC 3550 §11)."""
    spare: list[socket.socket] = []
    try:
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] % 2 == 0:
                return sock
            spare.append(sock)
    finally:
        for sock in spare:
            sock.close()


async def test_no_free_rtp_port_gets_503_and_the_next_call_works(tmp_path: Path) -> None:
    blocker = bind_even_port()
    port = blocker.getsockname()[1]
    try:
        async with Telephony(config(rtp_port_min=port, rtp_port_max=port)) as telephony:
            sipp = asyncio.create_task(run_uac(uac_rejected_scenario(503), tmp_path, telephony.sip_address,
                                               name="rejected"))
            leg = await next_leg(telephony)
            with pytest.raises(RtpPortsExhausted, match="no free even RTP port") as info:
                await leg.answer()
            assert info.value.retryable
            assert await asyncio.wait_for(leg.ended(), 10) == LegEnded(
                "rejected", "local", 503, "Service Unavailable: no free RTP port")
            result = await sipp
            assert result.returncode == 0, result.explain()
            blocker.close()  # the port is free again: the same Telephony answers the next call
            sipp = asyncio.create_task(run_sipp("uac_bye", tmp_path, remote=telephony.sip_address,
                                                local_port=free_udp_port()))
            leg = await next_leg(telephony)
            await leg.answer()
            assert leg.local_rtp_port == port
            rec = await record(leg)
            assert rec.events == [LegEnded("bye", "remote", None, "")]
            result = await sipp
            assert result.returncode == 0, result.explain()
    finally:
        blocker.close()


async def test_dial_to_a_host_name_is_a_clear_usage_error(telephony: Telephony) -> None:
    with pytest.raises(TelephonyError, match="not an IP address"):
        await telephony.dial("sip:agent@pbx.example.com")
    assert telephony.active_legs == 0


async def test_reinvite_moves_media_to_a_new_address_and_codec(telephony: Telephony, tmp_path: Path) -> None:
    first, second = await RtpCapture.open(), await RtpCapture.open()
    move = Reinvite("sendrecv", codecs=("PCMA",), media_port=second.port)
    steps: list[Step] = [Pause(600), move, Pause(600)]
    sipp = asyncio.create_task(run_uac(uac_scenario(steps, media_port=first.port), tmp_path,
                                       telephony.sip_address))
    try:
        leg = await next_leg(telephony)
        await leg.answer()
        rec = await record(leg)
        result = await sipp
    finally:
        first.close()
        second.close()
    assert result.returncode == 0, result.explain()
    assert rec.events[:-1] == [MediaChanged(False, "PCMA")]
    assert leg.negotiation is not None and leg.negotiation.remote_rtp_port == second.port
    assert len(first.packets) >= 10 and len(second.packets) >= 10
    assert {c.packet.payload_type for c in first.packets} == {0}
    assert {c.packet.payload_type for c in second.packets} == {8}
    assert all(c.packet.payload == b"\xd5" * 160 for c in second.packets)  # A-law silence
    # Same stream moved (RFC 3550 §5.1): one SSRC, the sequence continues on the new address.
    last, nxt = first.packets[-1].packet, second.packets[0].packet
    assert nxt.ssrc == last.ssrc
    assert (nxt.sequence_number - last.sequence_number) % 65536 == 1


async def test_concurrent_calls_with_media_leave_nothing_behind(tmp_path: Path) -> None:
    """Bounded load: 20 calls at 20/s, each playing 2 s of speech-like audio, all answered at once."""
    async with Telephony(config(max_calls=40)) as telephony:
        await _concurrent_calls(telephony, tmp_path, 20)


async def _concurrent_calls(telephony: Telephony, tmp_path: Path, calls: int) -> None:
    pcap = tmp_path / "audio.pcap"
    packets = write_rtp_pcap(pcap, noise_prompt(2000, seed=3), payload_type=0)
    sipp = asyncio.create_task(run_uac(uac_scenario([Play(pcap, 2400)]), tmp_path, telephony.sip_address,
                                       calls=calls, extra=("-r", "20", "-l", str(calls))))
    records: list[asyncio.Task[LegRecord]] = []
    peak_legs = 0

    async def answer(leg: CallLeg) -> LegRecord:
        await leg.answer()
        return await record(leg)

    async def accept() -> None:
        nonlocal peak_legs
        async for leg in telephony.incoming():
            records.append(asyncio.create_task(answer(leg)))
            peak_legs = max(peak_legs, telephony.active_legs)
            if len(records) == calls:
                return

    await asyncio.wait_for(accept(), 30)
    done = await asyncio.wait_for(asyncio.gather(*records), 30)
    result = await sipp
    assert result.returncode == 0, result.explain()
    assert all(r.events[-1] == LegEnded("bye", "remote", None, "") for r in done)
    received = [r.leg.stats().packets_received for r in done]
    assert all(count >= packets * 0.5 for count in received), received  # sipp lags on a busy box
    assert peak_legs >= calls // 2
    assert telephony.active_legs == 0 and telephony.rtp_ports_in_use == 0


async def test_calls_beyond_max_calls_get_503_from_the_sip_layer(tmp_path: Path) -> None:
    async with Telephony(config(max_calls=1)) as telephony:
        first = asyncio.create_task(run_sipp("uac_wait_bye", tmp_path, remote=telephony.sip_address,
                                             local_port=free_udp_port()))
        leg = await next_leg(telephony)
        await leg.answer()
        busy = await run_uac(uac_rejected_scenario(503), tmp_path, telephony.sip_address, name="busy")
        assert busy.returncode == 0, busy.explain()
        assert telephony.active_legs == 1  # the 503 never became a leg
        leg.hangup()
        assert (await leg.ended()).cause == "bye"
        result = await first
        assert result.returncode == 0, result.explain()


async def test_comfort_noise_only_peer_is_not_an_rtp_timeout(tmp_path: Path) -> None:
    """Silence suppression (RFC 3389): a caller that sends only comfort noise packets (payload type
    13, one every 200 ms) for longer than rtp_timeout_s is alive, not vanished."""
    pcap = tmp_path / "cn.pcap"
    write_udp(pcap, (UdpDatagram(i * 0.2, ("127.0.0.1", 6000), ("127.0.0.1", 7000),
                                 serialize_rtp(13, 100 + i, 1600 * i, 0xC0FFEE, bytes([60]), marker=i == 0))
                     for i in range(18)))
    async with Telephony(config(rtp_timeout_s=2.0)) as telephony:
        sipp = asyncio.create_task(run_uac(uac_scenario([Play(pcap, 3800)]), tmp_path, telephony.sip_address))
        leg = await next_leg(telephony)
        await leg.answer()
        rec = await record(leg)
        result = await sipp
    assert result.returncode == 0, result.explain()
    assert rec.events == [LegEnded("bye", "remote", None, "")]
    assert leg.stats().packets_received == 0  # nothing decodable arrived, yet the peer was alive


class SteppedClock:
    """Monotonic time plus an offset the test moves forward: the leg's and watchdog's only clock."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return asyncio.get_running_loop().time() + self.offset_s


async def test_the_injected_clock_drives_the_rtp_timeout_and_the_leg_duration(tmp_path: Path) -> None:
    clock = SteppedClock()
    async with Telephony(config(rtp_timeout_s=45.0), clock=clock) as telephony:
        sipp = asyncio.create_task(run_uac(uac_scenario([], end="wait_bye"), tmp_path,
                                           telephony.sip_address))
        leg = await next_leg(telephony)
        await leg.answer()
        frames = asyncio.create_task(record_frames(leg))
        started = asyncio.get_running_loop().time()
        clock.offset_s = 60.0  # a minute of silence from the peer, as the telephony's clock sees it
        ended = await asyncio.wait_for(leg.ended(), 5.0)
        waited_s = asyncio.get_running_loop().time() - started
        await frames
        result = await sipp
    assert result.returncode == 0, result.explain()
    assert ended == LegEnded("rtp-timeout", "local", None, "")
    assert waited_s < 3.0  # the next watchdog tick, not 45 s of real time
    assert leg.stats().duration_s >= 60.0
