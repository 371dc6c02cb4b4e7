"""Jitter buffer for one incoming RTP audio stream (sans-IO, pull model).

Theory of operation
-------------------
The session pushes each received audio packet as already-decoded 16-bit 8 kHz PCM with its RTP
sequence number, timestamp and SSRC (:meth:`JitterBuffer.push`), and pulls exactly one 20 ms frame
per media-clock tick (:meth:`JitterBuffer.pop`). Every pull returns a :class:`Frame` that says
whether it is real audio, concealment or silence, so the caller never blocks and never gets a
short frame.

Packets are stored sparsely by extended RTP timestamp (RFC 3550 §5.1: the timestamp counts
samples), so packets of any size (10, 20, 30 ms ...) are re-cut into 160-sample frames, and a
timestamp jump never allocates anything for the gap. Sequence numbers and timestamps are extended
past their 16/32-bit wrap by signed distance from the highest value seen (RFC 3550 Appendix A.1).

Delay: playout starts (and restarts after an underrun) once the target delay of audio is
buffered; while playing, the buffer never holds more than ``max_delay_ms`` ahead of the playout
point: if a burst or a faster sender clock pushes it past that, playout skips forward to the
target behind the newest audio. The target starts at ``target_delay_ms``; each underrun whose next
packet turns out to be merely late (it carries exactly the timestamp playout stopped at) raises it
by 20 ms, up to ``max_delay_ms - 40``; after 10 s without an underrun it comes back down by 20 ms
steps. An underrun followed by a timestamp gap (the sender paused: silence suppression, hold) does
not raise it.

Our own stalls: when the puller stalls (the event loop was blocked) while the sender kept sending,
the packets queued in the socket arrive at once afterwards. They were on time; the delay is ours,
and cutting it as an overflow would drop the caller's words. :meth:`JitterBuffer.allow_backlog`
raises the bound by what the puller owes (the frames it will pull back); 0 restores it.

Loss concealment: a frame with no audio repeats the last played frame under a linear fade that
reaches zero after ``conceal_ms`` (default 60 ms), continuing across consecutive missing frames,
then plays digital silence. The repeats alternate time-reversed and forward (reversed first), so
each one starts on the sample value the previous one ended on: a plain repeat would jump from the
frame's last sample to its first, which on voiced speech is an audible click. The output is thus
never louder than the last real audio and never steps (no clicks, nothing full-scale).

Drops, each counted: duplicates (same extended sequence number seen recently), late packets
(their timestamp was already played), packets outside the timestamp window (more than
``max_delay_ms`` ahead or one second behind the playout point) unless the sequence number
continues the stream, in which case the sender jumped its timestamp and the buffer resyncs to it.
A new SSRC resets the stream the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voicebot.media.frames import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME, SILENCE_FRAME
from voicebot.media.frames import Frame as Frame  # re-exported: the frame the buffer plays out
from voicebot.media.frames import FrameKind as FrameKind

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
# A sequence number this far ahead of the highest one still continues the stream (RFC 3550 A.1
# uses MAX_DROPOUT = 3000 for the same purpose; a jump in timestamp with a small sequence step is a
# sender-side timestamp jump, not a stranger).
_MAX_SEQ_STEP = 100
_MAX_DROPOUT = 3000
_RECENT_SEQS = 256
_BEHIND_WINDOW_SAMPLES = SAMPLE_RATE_HZ  # one second
_DECAY_FRAMES = 500  # 10 s of playout without an underrun lowers an adapted target by 20 ms


@dataclass(frozen=True, slots=True)
class JitterConfig:
    """Delay bounds of the buffer.

    ``target_delay_ms`` (default 60): audio buffered before playout starts or restarts after an
    underrun. ``max_delay_ms`` (default 200): the most audio held ahead of the playout point; more is
    skipped. ``conceal_ms`` (default 60): length of the faded repeat of the last frame before silence.
    ``max_packets`` (default 64): hard cap on stored packets.
    """

    target_delay_ms: int = 60
    max_delay_ms: int = 200
    conceal_ms: int = 60
    max_packets: int = 64

    def __post_init__(self) -> None:
        if self.target_delay_ms < 0 or self.target_delay_ms % 20:
            raise ValueError(
                f"target_delay_ms must be a non-negative multiple of 20, got {self.target_delay_ms}"
            )
        if self.max_delay_ms < self.target_delay_ms + 20:
            raise ValueError(
                f"max_delay_ms ({self.max_delay_ms}) must be at least target_delay_ms + 20 "
                f"({self.target_delay_ms + 20})"
            )
        if self.conceal_ms < 0 or self.conceal_ms % 20:
            raise ValueError(f"conceal_ms must be a non-negative multiple of 20, got {self.conceal_ms}")
        if self.max_packets < 1:
            raise ValueError(f"max_packets must be at least 1, got {self.max_packets}")


@dataclass(frozen=True, slots=True)
class JitterStats:
    received: int = 0  # packets pushed
    audio_frames: int = 0
    concealed_frames: int = 0
    silence_frames: int = 0
    late: int = 0  # arrived after their playout time
    lost: int = 0  # sequence numbers never played
    duplicate: int = 0
    reordered: int = 0  # arrived after a higher sequence number (still played if in time)
    out_of_window: int = 0  # timestamp far outside the window with no sequence continuity
    overflow_dropped: int = 0  # skipped because more than max_delay_ms was buffered
    resyncs: int = 0  # timestamp jumps followed
    ssrc_changes: int = 0
    underruns: int = 0  # buffer ran dry while playing; playout re-buffers
    target_delay_ms: int = 0  # the current (adapted) target delay


def _signed(delta: int, modulus: int) -> int:
    delta %= modulus
    return delta - modulus if delta >= modulus // 2 else delta


class JitterBuffer:
    """Reorders, de-duplicates and conceals one RTP audio stream; see the module docstring."""

    def __init__(self, config: JitterConfig | None = None) -> None:
        self.config = config or JitterConfig()
        self._base_target_samples = self.config.target_delay_ms * SAMPLE_RATE_HZ // 1000
        self._target_samples = self._base_target_samples
        self._max_samples = self.config.max_delay_ms * SAMPLE_RATE_HZ // 1000
        self._backlog_samples = 0  # allowed above max_delay while the puller catches up (allow_backlog)
        # The target may grow while packets keep arriving late, up to 40 ms below the maximum.
        self._max_target_samples = max(self._base_target_samples, self._max_samples - 2 * SAMPLES_PER_FRAME)
        self._waiting_for_late = False  # an underrun happened; is the packet we ran out at late?
        self._frames_since_underrun = 0
        self._conceal_total = self.config.conceal_ms * SAMPLE_RATE_HZ // 1000
        self._counts: dict[str, int] = dict.fromkeys(
            (name for name in JitterStats.__dataclass_fields__ if name != "target_delay_ms"), 0)
        self._ssrc: int | None = None
        # Concealment state survives resets so the fade continues smoothly.
        self._last_pcm: bytes | None = None
        self._gap_samples = 0
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._chunks: dict[int, tuple[int, bytes]] = {}  # extended ts -> (extended seq, pcm)
        self._buffered_samples = 0
        self._play_ts: int | None = None
        self._playing = False
        self._highest_seq: int | None = None
        self._highest_ts = 0
        self._last_played_seq: int | None = None
        self._recent: set[int] = set()
        # The last out-of-window packet (seq, ts, pcm): a second one continuing it means a new stream.
        self._jump_candidate: tuple[int, int, bytes] | None = None

    # ------------------------------------------------------------------ input

    def push(self, sequence_number: int, timestamp: int, ssrc: int, pcm16: bytes) -> None:
        """Add one received audio packet (payload decoded to 16-bit 8 kHz PCM)."""
        self._counts["received"] += 1
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self._counts["ssrc_changes"] += 1
            self._ssrc = ssrc
            self._reset_stream()
        self._accept(sequence_number, timestamp, pcm16)

    def _accept(self, sequence_number: int, timestamp: int, pcm16: bytes) -> None:
        counts = self._counts
        if self._highest_seq is None:
            self._start_stream(sequence_number, timestamp)
        assert self._highest_seq is not None
        seq_step = _signed(sequence_number - self._highest_seq, _SEQ_MOD)
        ext_seq = self._highest_seq + seq_step
        ext_ts = self._highest_ts + _signed(timestamp - self._highest_ts, _TS_MOD)
        samples = len(pcm16) // 2
        reference = self._play_ts if self._play_ts is not None else self._highest_ts
        ahead = ext_ts - reference
        if ahead > self._max_samples + self._backlog_samples or ahead < -_BEHIND_WINDOW_SAMPLES:
            # Outside the window: a sender timestamp jump if the sequence continues (or two
            # consecutive packets agree), otherwise a stray packet.
            candidate = self._jump_candidate
            continues = 0 < seq_step <= _MAX_SEQ_STEP
            agrees = candidate is not None and (sequence_number - candidate[0]) % _SEQ_MOD == 1
            if not (continues or agrees):
                self._jump_candidate = (sequence_number, timestamp, pcm16)
                counts["out_of_window"] += 1
                return
            counts["resyncs"] += 1
            self._reset_stream()
            if agrees and candidate is not None:
                counts["out_of_window"] -= 1  # the candidate turned out to be the stream's new start
                self._accept(*candidate)
            else:
                self._start_stream(sequence_number, timestamp)
            self._accept(sequence_number, timestamp, pcm16)
            return
        if abs(seq_step) > _MAX_DROPOUT:
            # The sequence restarted but the timestamp continues: re-base the sequence space.
            self._recent.clear()
            self._last_played_seq = None
            ext_seq = self._highest_seq = sequence_number
            seq_step = 0
        self._jump_candidate = None
        if ext_seq in self._recent:
            counts["duplicate"] += 1
            return
        self._recent.add(ext_seq)
        if len(self._recent) > 2 * _RECENT_SEQS:
            # Prune in batches so the cost is amortized to O(1) per packet.
            floor = ext_seq - _RECENT_SEQS
            self._recent = {s for s in self._recent if s > floor}
        if self._play_ts is not None and ext_ts < self._play_ts:
            counts["late"] += 1
            return
        if ext_ts in self._chunks or samples == 0:
            # Same timestamp under a new sequence number: a retransmission, or an empty payload.
            counts["duplicate"] += 1
            return
        if seq_step < 0:
            counts["reordered"] += 1
        else:
            self._highest_seq = ext_seq
        if ext_ts > self._highest_ts:
            self._highest_ts = ext_ts
        if self._waiting_for_late:
            self._waiting_for_late = False
            if not self._playing and ext_ts == self._play_ts:
                # The buffer ran dry and the very next audio arrived afterwards: the network delay
                # varies more than the target covers, so cover 20 ms more. A timestamp gap instead
                # (the sender paused, e.g. silence suppression) says nothing about jitter.
                self._target_samples = min(self._target_samples + SAMPLES_PER_FRAME, self._max_target_samples)
        self._chunks[ext_ts] = (ext_seq, pcm16[: samples * 2])
        self._buffered_samples += samples
        self._enforce_bounds(ext_ts + samples)

    def _start_stream(self, sequence_number: int, timestamp: int) -> None:
        self._highest_seq = sequence_number
        self._highest_ts = timestamp

    def _enforce_bounds(self, end: int) -> None:
        # Only the packet just added can newly exceed the bound (the playout point only moves
        # forward), and if it does, it is the newest audio.
        counts = self._counts
        bound = self._max_samples + self._backlog_samples
        if self._playing and self._play_ts is not None and end - self._play_ts > bound:
            skip = end - self._target_samples - self._play_ts
            skip = -(-skip // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
            self._play_ts += skip
            self._drop_before(self._play_ts, "overflow_dropped")
        # A packet holds at least 10 ms in practice: the backlog may take that many more.
        while len(self._chunks) > self.config.max_packets + self._backlog_samples // (SAMPLES_PER_FRAME // 2):
            oldest = min(self._chunks)
            self._discard(oldest)
            counts["overflow_dropped"] += 1

    def _discard(self, ts: int) -> None:
        seq, pcm = self._chunks.pop(ts)
        self._buffered_samples -= len(pcm) // 2
        if self._last_played_seq is None or seq > self._last_played_seq:
            self._last_played_seq = seq

    def _drop_before(self, play_ts: int, counter: str) -> None:
        for ts in sorted(self._chunks):
            if ts + len(self._chunks[ts][1]) // 2 <= play_ts:
                self._discard(ts)
                self._counts[counter] += 1

    def allow_backlog(self, frames: int) -> None:
        """Hold up to ``frames`` 20 ms frames above ``max_delay_ms``: the frames the puller missed
        during a stall of its own and will pull back (0: the normal bound again)."""
        self._backlog_samples = max(0, frames) * SAMPLES_PER_FRAME

    # ----------------------------------------------------------------- output

    def pop(self) -> Frame:
        """The next 20 ms frame; call exactly once per 20 ms tick."""
        if not self._playing:
            if self._chunks and self._buffered_samples >= max(self._target_samples, 1):
                first = min(self._chunks)
                if self._play_ts is None or first > self._play_ts:
                    self._play_ts = first
                self._playing = True
            else:
                return self._filler()
        assert self._play_ts is not None
        if not self._chunks:
            # Underrun: freeze the playout point and re-buffer to the target delay.
            self._playing = False
            self._counts["underruns"] += 1
            self._waiting_for_late = True
            self._frames_since_underrun = 0
            return self._filler()
        start = self._play_ts
        end = start + SAMPLES_PER_FRAME
        spans: list[tuple[int, bytes]] = []  # (byte offset in the frame, samples)
        covered = 0
        for ts in sorted(self._chunks):
            if ts >= end:
                break
            seq, pcm = self._chunks[ts]
            chunk_end = ts + len(pcm) // 2
            lo = max(ts, start)
            hi = min(chunk_end, end)
            if hi > lo:
                spans.append(((lo - start) * 2, pcm[(lo - ts) * 2 : (hi - ts) * 2]))
                covered += hi - lo
            if chunk_end <= end:
                self._chunks.pop(ts)
                self._buffered_samples -= len(pcm) // 2
                if self._last_played_seq is not None and seq > self._last_played_seq + 1:
                    self._counts["lost"] += seq - self._last_played_seq - 1
                if self._last_played_seq is None or seq > self._last_played_seq:
                    self._last_played_seq = seq
        self._play_ts = end
        self._frames_since_underrun += 1
        if self._frames_since_underrun >= _DECAY_FRAMES and self._target_samples > self._base_target_samples:
            # Calm for a while: give back 20 ms of delay (the overflow rule trims the buffer).
            self._target_samples -= SAMPLES_PER_FRAME
            self._frames_since_underrun = 0
        if covered == SAMPLES_PER_FRAME:
            frame = spans[0][1] if len(spans) == 1 else b"".join(pcm for _, pcm in spans)
            self._last_pcm = frame
            self._gap_samples = 0
            self._counts["audio_frames"] += 1
            return Frame(FrameKind.AUDIO, frame)
        filler = self._filler()
        if covered == 0:
            return filler
        # Partly covered (packets not cut at 20 ms, or a partial loss): real samples over the filler.
        mixed = bytearray(filler.pcm)
        for offset, pcm in spans:
            mixed[offset : offset + len(pcm)] = pcm
        return Frame(FrameKind.CONCEALED, bytes(mixed))

    def _filler(self) -> Frame:
        """Concealment for one missing frame: faded repeat of the last frame, then silence."""
        last = self._last_pcm
        if last is None or self._gap_samples >= self._conceal_total:
            self._counts["silence_frames"] += 1
            return Frame(FrameKind.SILENCE, SILENCE_FRAME)
        total = self._conceal_total
        positions = np.arange(self._gap_samples, self._gap_samples + SAMPLES_PER_FRAME, dtype=np.int64)
        weights = total - positions  # linear fade from 1 to 0 across the whole concealment
        samples = np.frombuffer(last, dtype="<i2").astype(np.int64)
        if (self._gap_samples // SAMPLES_PER_FRAME) % 2 == 0:
            samples = samples[::-1]  # mirror: starts where the previous frame ended
        faded = (samples * weights) // total
        self._gap_samples += SAMPLES_PER_FRAME
        self._counts["concealed_frames"] += 1
        return Frame(FrameKind.CONCEALED, faded.astype("<i2").tobytes())

    # ------------------------------------------------------------------ state

    @property
    def buffered_ms(self) -> int:
        return self._buffered_samples * 1000 // SAMPLE_RATE_HZ

    @property
    def target_delay_ms(self) -> int:
        """The current target delay: the configured one, plus what late packets added."""
        return self._target_samples * 1000 // SAMPLE_RATE_HZ

    @property
    def buffered_packets(self) -> int:
        return len(self._chunks)

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    def stats(self) -> JitterStats:
        return JitterStats(**self._counts, target_delay_ms=self.target_delay_ms)
