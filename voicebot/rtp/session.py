"""One call leg's RTP media, as a sans-IO core: datagrams and clock ticks in, datagrams and events out.

Theory of operation
-------------------
Receiving: :meth:`RtpSession.receive_datagram` takes a UDP datagram and its source address. Media
is accepted first only from the SDP-advertised address. With ``symmetric_latching`` (for callers
behind NAT, RFC 4961 symmetric RTP) another source can take over, but only after
``latch_packets`` consecutive valid packets (negotiated payload type, one SSRC, sequence numbers
one apart) from that one source, and, if the current source has already delivered media, only
once it has been quiet for ``relatch_quiet_ms``: a stranger spraying valid RTP at a guessed port
can neither pre-empt a caller who sends from its SDP address nor steal a flowing call (the "RTP
Bleed" class of attacks; Asterisk's strictrtp learning is the model). A packet from the SDP
address itself always wins the latch back. Everything refused is counted (``dropped_stranger``).
RTCP
(RFC 5761 §4 demultiplexing) is recognized and ignored, malformed datagrams are counted and
dropped. G.711 payloads (PCMU 0, PCMA 8) are decoded to 16-bit PCM into the
:class:`~voicebot.rtp.jitter.JitterBuffer`; telephone-events go to the
:class:`~voicebot.rtp.dtmf.DtmfReceiver`, whose reports are queued as events. The media clock
calls :meth:`pull_frame` every 20 ms for the next decoded frame.

Sending: the media clock calls :meth:`tick` every 20 ms (the core has no clock of its own); it
returns the datagrams to send now. The RTP timestamp advances by 160 on every tick whether or not
anything is sent (RFC 3550 §5.1: it follows the sampling clock), the sequence number by one per
packet sent, so both run on continuously across prompts, DTMF and idle time. Prompt audio queued by
:meth:`play` is sent in ``ptime_ms`` packets; the first packet of each talkspurt (a prompt after
idle, or audio after a DTMF event) carries the marker bit (RFC 3551 §4.1). When idle the session
sends encoded silence (``comfort_silence``) or nothing. Until the peer has sent one well-formed RTP
or RTCP packet, sending stops after ``unverified_send_limit_ms``: an INVITE whose SDP points at a
third party cannot turn the robot into a reflector of a whole call's audio. :meth:`flush` drops
every queued prompt at once, so barge-in stops the prompt within the packet already sent.
:meth:`send_dtmf` sends an RFC 4733 event (audio pauses meanwhile). With no remote address, or
``send`` off (the peer put the call on hold), nothing is sent but time, prompts and DTMF plans
still advance.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from voicebot.media.frames import BYTES_PER_FRAME, FRAME_MS, SAMPLES_PER_FRAME
from voicebot.media.g711 import CODECS, G711Codec
from voicebot.rtp.dtmf import DtmfEnded, DtmfEventReceived, DtmfReceiver, dtmf_payloads
from voicebot.rtp.errors import RtpPacketError, RtpUsageError
from voicebot.rtp.jitter import Frame, JitterBuffer, JitterConfig, JitterStats
from voicebot.rtp.packet import RtpPacket, is_rtcp, serialize_rtp

Address = tuple[str, int]
_MAX_CANDIDATES = 8  # would-be peers tracked at once while latching


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    """What SDP negotiation decided about the peer.

    ``address``: where to send RTP (and, unless latching, the only accepted source); None = not known
    yet. ``payload_type``: the audio codec to send, 0 (PCMU) or 8 (PCMA). ``telephone_event_pt``: the
    dynamic RFC 4733 payload type, None if not negotiated. ``ptime_ms``: packet duration to send,
    a multiple of 20 from 20 to 200 (others are rounded down to a multiple of 20). ``send``: False when
    the peer's direction attribute (sendonly/inactive, RFC 3264 §5.1) means we must not send.
    """

    address: Address | None
    payload_type: int = 0
    telephone_event_pt: int | None = 101
    ptime_ms: int = 20
    send: bool = True

    def __post_init__(self) -> None:
        if self.payload_type not in CODECS:
            raise RtpUsageError(f"payload_type must be 0 (PCMU) or 8 (PCMA), got {self.payload_type}")
        if self.telephone_event_pt is not None and not 96 <= self.telephone_event_pt <= 127:
            raise RtpUsageError(
                f"telephone_event_pt must be a dynamic payload type 96-127, got {self.telephone_event_pt}"
            )
        if not 10 <= self.ptime_ms <= 200:
            raise RtpUsageError(f"ptime_ms must be 10-200, got {self.ptime_ms}")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-call media behaviour.

    ``symmetric_latching`` (default False): besides the SDP address, accept and send to another
    source once it has sent ``latch_packets`` (default 5) consecutive valid packets with one SSRC
    (for NAT), and, if the current source has delivered media, only after it has been quiet for
    ``relatch_quiet_ms`` (default 500). ``unverified_send_limit_ms`` (default 5000; 0 = no limit):
    stop sending to an address from which no well-formed RTP or RTCP came for this long since it
    was set (it resumes with the first one).
    ``comfort_silence`` (default True): send
    encoded silence while idle; False sends nothing. ``max_queued_ms`` (default 600000, 10 min):
    prompt audio beyond this is dropped and counted. ``dtmf_duration_ms`` (default 100) and
    ``dtmf_volume`` (default 10, i.e. -10 dBm0) for sent digits.
    """

    symmetric_latching: bool = False
    latch_packets: int = 5
    relatch_quiet_ms: int = 500
    unverified_send_limit_ms: int = 5000
    comfort_silence: bool = True
    max_queued_ms: int = 600_000
    dtmf_duration_ms: int = 100
    dtmf_volume: int = 10
    jitter: JitterConfig = field(default_factory=JitterConfig)

    def __post_init__(self) -> None:
        if self.latch_packets < 1:
            raise RtpUsageError(f"latch_packets must be at least 1, got {self.latch_packets}")
        if self.relatch_quiet_ms < 0 or self.unverified_send_limit_ms < 0:
            raise RtpUsageError("relatch_quiet_ms and unverified_send_limit_ms must not be negative")


@dataclass(frozen=True, slots=True)
class PlayoutFinished:
    """A prompt queued by :meth:`RtpSession.play` was sent to the end, or flushed (``interrupted``)."""

    prompt_id: int
    interrupted: bool


@dataclass(frozen=True, slots=True)
class RemoteLatched:
    """Symmetric RTP latched to this source address (or back to the SDP address); it is the peer now."""

    address: Address


SessionEvent = DtmfEventReceived | DtmfEnded | PlayoutFinished | RemoteLatched


@dataclass(frozen=True, slots=True)
class SessionStats:
    packets_received: int
    packets_sent: int
    dropped_no_remote: int  # arrived before the remote was set
    dropped_stranger: int  # valid or not, from an address other than the negotiated/latched peer
    dropped_malformed: int  # not valid RTP (the error is logged by the adapter)
    dropped_payload_type: int  # a payload type that was not negotiated
    rtcp_ignored: int
    dtmf_flash: int
    dtmf_unknown: int
    prompt_ms_dropped: int  # play() beyond max_queued_ms
    latched_address: Address | None
    jitter: JitterStats
    latches: int = 0  # times the peer address moved to another source (RemoteLatched events)
    send_suppressed: int = 0  # packets not sent: the peer never sent one valid packet (reflection cap)


class _Prompt:
    __slots__ = ("offset", "pcm", "prompt_id")

    def __init__(self, prompt_id: int, pcm: bytes) -> None:
        self.prompt_id = prompt_id
        self.pcm = pcm
        self.offset = 0


class RtpSession:
    """The media state of one call leg; see the module docstring."""

    def __init__(self, config: SessionConfig | None = None, *, ssrc: int, sequence_number: int,
                 timestamp: int) -> None:
        self.config = config or SessionConfig()
        self.ssrc = ssrc & 0xFFFFFFFF
        self._seq = sequence_number & 0xFFFF
        self._ts = timestamp & 0xFFFFFFFF
        self._remote: RemoteMedia | None = None
        self._codec: G711Codec = CODECS[0]
        self._frames_per_packet = 1
        self._latched: Address | None = None
        self._candidates: dict[Address, tuple[int, int, int]] = {}  # source -> (ssrc, last seq, run)
        self._ticks = 0  # the core's only clock: one per 20 ms tick()
        self._last_rx_tick: int | None = None  # last valid packet from the peer (None: never)
        self._verified = False  # the current send address has sent a valid packet
        self._unverified_ticks = 0
        self._jitter = JitterBuffer(self.config.jitter)
        self._dtmf_rx = DtmfReceiver()
        self._events: deque[SessionEvent] = deque()
        self._prompts: deque[_Prompt] = deque()
        self._queued_bytes = 0
        self._max_queued_bytes = self.config.max_queued_ms * 16  # 16 bytes per ms at 8 kHz 16-bit
        self._next_prompt_id = 1
        self._dtmf_plan: deque[list[bytes]] = deque()
        self._dtmf_queue: deque[str] = deque()
        self._dtmf_ts = 0
        self._dtmf_first = False
        self._talking = False  # the last packet sent was prompt audio (marker logic)
        self._sent_any = False
        self._pending: list[bytes] = []  # frames of a packet being filled (ptime > 20 ms)
        self._pending_ts = 0
        self._pending_marker = False
        self._silence_frame = b""
        self._counts = dict.fromkeys(
            ("packets_received", "packets_sent", "dropped_no_remote", "dropped_stranger", "dropped_malformed",
             "dropped_payload_type", "rtcp_ignored", "prompt_ms_dropped", "latches", "send_suppressed"), 0)
        self.last_error: str | None = None  # message of the last malformed datagram, for logging
        # The prompt audio the last tick() took for sending: (prompt id, 20 ms PCM), or None (silence,
        # a DTMF event, or no remote). What a call recording puts on the robot's channel.
        self.last_played: tuple[int, bytes] | None = None

    # ------------------------------------------------------------ negotiation

    def set_remote(self, remote: RemoteMedia) -> None:
        """Apply the negotiated peer (initial answer or re-INVITE); a new address resets the latch."""
        if self._remote is None or remote.address != self._remote.address:
            self._latched = None
            self._candidates.clear()
            self._last_rx_tick = None
            self._verified = False
            self._unverified_ticks = 0
        if self._remote is not None and remote.payload_type != self._remote.payload_type:
            self._talking = False  # the first packet in the new codec starts a talkspurt
        self._remote = remote
        self._codec = CODECS[remote.payload_type]
        self._frames_per_packet = max(1, remote.ptime_ms // 20)
        self._silence_frame = self._codec.silence(SAMPLES_PER_FRAME)
        self._pending.clear()

    @property
    def remote(self) -> RemoteMedia | None:
        return self._remote

    @property
    def send_address(self) -> Address | None:
        """Where packets go: the latched source if latched, else the SDP address (None: do not send)."""
        if self._remote is None or not self._remote.send:
            return None
        return self._latched or self._remote.address

    # ------------------------------------------------------------- receiving

    def receive_datagram(self, data: bytes, source: Address) -> None:
        counts = self._counts
        remote = self._remote
        if remote is None:
            counts["dropped_no_remote"] += 1
            return
        peer = self._latched or remote.address
        from_peer = source == peer
        # Without latching a stranger is refused unread; with it, it must prove itself (below).
        if not from_peer and not self.config.symmetric_latching:
            counts["dropped_stranger"] += 1
            return
        if is_rtcp(data):
            counts["rtcp_ignored"] += 1
            self._verified = self._verified or from_peer
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpPacketError as exc:
            counts["dropped_malformed"] += 1
            self.last_error = exc.message
            return
        # Well-formed RTP or RTCP from the send address is consent to receive media (any payload
        # type: comfort noise from a phone with silence suppression counts), cf. RFC 7675.
        self._verified = self._verified or from_peer
        payload_type = packet.payload_type
        codec = CODECS.get(payload_type)
        is_dtmf = payload_type == remote.telephone_event_pt
        if codec is None and not is_dtmf:
            counts["dropped_payload_type"] += 1
            return
        if not from_peer:
            if source == remote.address:
                self._latch(source)  # the SDP address is the signalled truth: it always wins back
            elif self._run_complete(source, packet.ssrc, packet.sequence_number):
                self._latch(source)
            else:
                counts["dropped_stranger"] += 1
                return
        if codec is not None:
            pcm = codec.decode(packet.payload)
            self._jitter.push(packet.sequence_number, packet.timestamp, packet.ssrc, pcm)
        else:
            try:
                self._events.extend(self._dtmf_rx.receive(packet.timestamp, packet.marker, packet.payload))
            except RtpPacketError as exc:
                counts["dropped_malformed"] += 1
                self.last_error = exc.message
                return
        counts["packets_received"] += 1
        self._last_rx_tick = self._ticks
        self._verified = True

    def _run_complete(self, source: Address, ssrc: int, sequence_number: int) -> bool:
        """Count a valid packet from a would-be peer; True once it may take the latch."""
        previous = self._candidates.get(source)
        if previous is not None and previous[0] == ssrc and sequence_number == (previous[1] + 1) & 0xFFFF:
            run = previous[2] + 1
        else:
            run = 1
            if previous is None and len(self._candidates) >= _MAX_CANDIDATES:
                # A spray from many addresses must not grow state: forget the oldest candidate.
                del self._candidates[next(iter(self._candidates))]
        self._candidates[source] = (ssrc, sequence_number, run)
        if run < self.config.latch_packets:
            return False
        if self._last_rx_tick is not None:
            quiet_ticks = self._ticks - self._last_rx_tick
            if quiet_ticks * FRAME_MS < self.config.relatch_quiet_ms:
                return False  # the current peer is still sending: refuse the takeover
        return True

    def _latch(self, source: Address) -> None:
        assert self._remote is not None
        self._latched = None if source == self._remote.address else source
        self._candidates.clear()
        self._counts["latches"] += 1
        self._events.append(RemoteLatched(source))

    def pull_frame(self) -> Frame:
        """The next 20 ms of received audio (call once per tick)."""
        return self._jitter.pop()

    def events(self) -> list[SessionEvent]:
        """Drain the events produced since the last call."""
        if not self._events:
            return []
        out = list(self._events)
        self._events.clear()
        return out

    # --------------------------------------------------------------- sending

    def play(self, pcm16: bytes) -> int:
        """Queue 16-bit 8 kHz PCM behind any playing prompt; returns the prompt id for PlayoutFinished."""
        if len(pcm16) % 2:
            raise RtpUsageError(
                f"prompt audio must be 16-bit PCM (an even byte count), got {len(pcm16)} bytes"
            )
        prompt_id = self._next_prompt_id
        self._next_prompt_id += 1
        room = self._max_queued_bytes - self._queued_bytes
        if len(pcm16) > room:
            self._counts["prompt_ms_dropped"] += (len(pcm16) - max(room, 0)) // 16
            pcm16 = pcm16[: max(room, 0) // 2 * 2]
        if pcm16:
            self._prompts.append(_Prompt(prompt_id, pcm16))
            self._queued_bytes += len(pcm16)
        else:
            self._events.append(PlayoutFinished(prompt_id, interrupted=False))
        return prompt_id

    def flush(self) -> int:
        """Drop all queued prompt audio now (barge-in); returns how many prompts were interrupted."""
        interrupted = len(self._prompts)
        for prompt in self._prompts:
            self._events.append(PlayoutFinished(prompt.prompt_id, interrupted=True))
        self._prompts.clear()
        self._queued_bytes = 0
        if self._pending:
            self._pending.clear()
        return interrupted

    @property
    def buffered_ms(self) -> int:
        """Received audio waiting in the jitter buffer."""
        return self._jitter.buffered_ms

    def allow_backlog(self, frames: int) -> None:
        """Let the jitter buffer hold ``frames`` more than its maximum delay: the frames a stalled
        caller of :meth:`pull_frame` owes (see :meth:`JitterBuffer.allow_backlog`)."""
        self._jitter.allow_backlog(frames)

    @property
    def next_sequence_number(self) -> int:
        """The sequence number the next packet sent will carry."""
        return self._seq

    @property
    def malformed_count(self) -> int:
        """Datagrams dropped as malformed so far (cheap; for the adapter's rate-limited logging)."""
        return self._counts["dropped_malformed"]

    @property
    def playing(self) -> bool:
        return bool(self._prompts)

    @property
    def queued_ms(self) -> int:
        return self._queued_bytes // 16

    def send_dtmf(self, digit: str) -> None:
        """Queue an RFC 4733 digit; raises :class:`RtpUsageError` if not negotiated or not a digit."""
        if self._remote is None or self._remote.telephone_event_pt is None:
            raise RtpUsageError("cannot send DTMF: the peer did not negotiate telephone-event")
        dtmf_payloads(digit)  # validates the digit now, not at send time
        self._dtmf_queue.append(digit)

    def tick(self) -> list[bytes]:
        """Advance the send clock by 20 ms; returns the datagrams to send to :attr:`send_address`."""
        frame_ts = self._ts
        self._ts = (self._ts + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        self._ticks += 1
        self.last_played = None
        remote = self._remote
        if remote is None:
            return []
        send = self.send_address is not None
        capped = False
        if send and not self._verified:
            self._unverified_ticks += 1
            limit_ms = self.config.unverified_send_limit_ms
            capped = bool(limit_ms) and self._unverified_ticks * FRAME_MS > limit_ms
            send = not capped
        if not self._dtmf_plan and self._dtmf_queue and remote.telephone_event_pt is not None:
            digit = self._dtmf_queue.popleft()
            self._dtmf_plan.extend(dtmf_payloads(
                digit, duration_ms=self.config.dtmf_duration_ms, volume=self.config.dtmf_volume))
            self._dtmf_ts = frame_ts
            self._dtmf_first = True
            self._pending.clear()
        if self._dtmf_plan and remote.telephone_event_pt is not None:
            payloads = self._dtmf_plan.popleft()
            self._talking = False  # audio after the event starts a new talkspurt
            marker = self._dtmf_first
            self._dtmf_first = False
            if not send:
                self._counts["send_suppressed"] += len(payloads) if capped else 0
                return []
            out = []
            for payload in payloads:
                out.append(serialize_rtp(
                    remote.telephone_event_pt, self._seq, self._dtmf_ts, self.ssrc, payload, marker))
                self._seq = (self._seq + 1) & 0xFFFF
                marker = False
            self._counts["packets_sent"] += len(out)
            return out
        frame = self._next_prompt_frame()
        if not send:
            self.last_played = None  # held (RFC 3264 sendonly/inactive) or capped: nobody hears it
        if frame is None:
            if not self.config.comfort_silence:
                self._talking = False
                self._pending.clear()
                return []
            encoded = self._silence_frame
            marker = not self._sent_any
            self._talking = False
        else:
            encoded = self._codec.encode(frame)
            marker = not self._talking
            self._talking = True
        if not self._pending:
            self._pending_ts = frame_ts
            self._pending_marker = marker
        self._pending.append(encoded)
        if len(self._pending) < self._frames_per_packet:
            return []
        payload = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not send:
            self._counts["send_suppressed"] += 1 if capped else 0
            return []
        datagram = serialize_rtp(remote.payload_type, self._seq, self._pending_ts, self.ssrc, payload,
                                 self._pending_marker)
        self._seq = (self._seq + 1) & 0xFFFF
        self._sent_any = True
        self._counts["packets_sent"] += 1
        return [datagram]

    def _next_prompt_frame(self) -> bytes | None:
        prompts = self._prompts
        if not prompts:
            return None
        prompt = prompts[0]
        start = prompt.offset
        frame = prompt.pcm[start : start + BYTES_PER_FRAME]
        prompt.offset = start + len(frame)
        self._queued_bytes -= len(frame)
        if prompt.offset >= len(prompt.pcm):
            prompts.popleft()
            self._events.append(PlayoutFinished(prompt.prompt_id, interrupted=False))
        if len(frame) < BYTES_PER_FRAME:
            frame += bytes(BYTES_PER_FRAME - len(frame))
        self.last_played = (prompt.prompt_id, frame)
        return frame

    # ----------------------------------------------------------------- state

    def stats(self) -> SessionStats:
        c = self._counts
        return SessionStats(
            packets_received=c["packets_received"], packets_sent=c["packets_sent"],
            dropped_no_remote=c["dropped_no_remote"], dropped_stranger=c["dropped_stranger"],
            dropped_malformed=c["dropped_malformed"], dropped_payload_type=c["dropped_payload_type"],
            rtcp_ignored=c["rtcp_ignored"], dtmf_flash=self._dtmf_rx.flash,
            dtmf_unknown=self._dtmf_rx.unknown,
            prompt_ms_dropped=c["prompt_ms_dropped"], latched_address=self._latched,
            jitter=self._jitter.stats(), latches=c["latches"], send_suppressed=c["send_suppressed"],
        )
