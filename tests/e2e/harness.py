"""Whole-call harness: the real ``voicebot`` process, sipp callers, speech pcaps and a loopback capture.

Used by the e2e tests (tests/e2e) and by bench/call_bench.py. Everything runs on 127.0.0.1:

* :func:`start_voicebot` runs ``voicebot run`` (or ``voicebot call``) as a subprocess with its own
  SIP port, RTP port range, records database and TTS cache, and waits for its ``app.ready`` log
  event. :meth:`Voicebot.stop` always ends it (SIGTERM, then SIGKILL).
* :func:`speech_pcap` renders a script of speech and silence (espeak-ng -> 8 kHz -> G.711 mu-law,
  via :func:`voicebot.testing.speech.telephone_speech`, the same bytes on every run and machine)
  into a pcap that sipp's ``play_pcap_audio`` sends as 20 ms RTP, and says where each utterance
  starts and ends.
* :func:`render_scenario` fills a sipp scenario template from ``scenarios/``; :func:`call` runs it
  with :func:`tests.sip.peers.run_sipp` and a Call-ID the test chooses, so the call record can be
  looked up afterwards.
* :class:`Capture` runs ``dumpcap`` on lo filtered to the robot's RTP ports; the robot's prompts
  and the caller's audio are read back with :func:`voicebot.testing.pcap.read_udp`.
"""

from __future__ import annotations

import audioop
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.sip.peers import SippResult, free_udp_port, run_sipp
from voicebot.testing.pcap import UdpDatagram, read_udp, write_rtp_pcap
from voicebot.testing.speech import silence, telephone_speech

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).parent / "scenarios"
DIALPLANS = Path(__file__).parent / "dialplans"
VOICEBOT = Path(sys.executable).with_name("voicebot")
DTMF_0_PCAP = Path("/usr/share/sip-tester/dtmf_2833_0.pcap")
PACKET_MS = 20
# mu-law RTP payload energy above this RMS (16-bit scale) counts as sound, not silence/comfort noise.
SOUND_RMS = 300

# ---------------------------------------------------------------------------------------------- ports


def free_even_port_range(count: int = 40) -> tuple[int, int]:
    """A block of ``count`` UDP ports that are free right now (tiny reuse race accepted), low end even.

    Taken from below the Linux ephemeral range (32768+) so sockets other tests bind to port 0 do not
    land in it while the robot runs.
    """
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(20000, 32000 - count) & ~1
        socks: list[socket.socket] = []
        try:
            for port in range(low, low + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return low, low + count - 1
    raise RuntimeError("no free block of UDP ports between 20000 and 32000")


# ------------------------------------------------------------------------------------- speech pcaps


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Pause:
    duration_ms: int


Script = Sequence[Say | Pause]


@dataclass(frozen=True, slots=True)
class SpeechPcap:
    """A pcap of 20 ms PCMU packets and where, relative to its first packet, each utterance lies."""

    path: Path
    duration_s: float
    utterances: tuple[tuple[str, float, float], ...]  # (text, start_s, end_s) of the audible speech

    @property
    def speech_end_s(self) -> float:
        return self.utterances[-1][2] if self.utterances else 0.0


def _audible_span_s(pcm16: bytes) -> tuple[float, float]:
    """First and last 20 ms frame whose RMS is above :data:`SOUND_RMS` (espeak pads both ends)."""
    frame = 8000 * PACKET_MS // 1000 * 2
    loud = [i for i in range(0, len(pcm16) - frame + 1, frame)
            if audioop.rms(pcm16[i : i + frame], 2) > SOUND_RMS]
    if not loud:
        return 0.0, 0.0
    return loud[0] / 16000, (loud[-1] + frame) / 16000


def speech_pcap(cache_dir: Path, script: Script, *, words_per_minute: int = 150) -> SpeechPcap:
    """Render ``script`` into ``cache_dir`` (once per distinct script: the file name is its hash)."""
    key = hashlib.sha256(repr((list(script), words_per_minute)).encode()).hexdigest()[:16]
    path = cache_dir / f"speech-{key}.pcap"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        data = json.loads(meta.read_text())
        return SpeechPcap(path, data["duration_s"], tuple(tuple(u) for u in data["utterances"]))
    pcm = bytearray()
    utterances: list[tuple[str, float, float]] = []
    for item in script:
        if isinstance(item, Pause):
            pcm += silence(item.duration_ms)
        else:
            spoken = telephone_speech(item.text, words_per_minute=words_per_minute)
            start, end = _audible_span_s(spoken)
            offset = len(pcm) / 16000
            utterances.append((item.text, offset + start, offset + end))
            pcm += spoken
    packets = write_rtp_pcap(path, bytes(pcm), payload_type=0)
    duration_s = packets * PACKET_MS / 1000
    meta.write_text(json.dumps({"duration_s": duration_s, "utterances": utterances}))
    return SpeechPcap(path, duration_s, tuple(utterances))


# ------------------------------------------------------------------------------------- the robot


@dataclass
class Voicebot:
    """A running ``voicebot run`` / ``voicebot call`` process and where to find its outputs."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    sip_port: int
    rtp_ports: tuple[int, int]
    records_db: Path
    stdout_path: Path
    stderr_path: Path
    sip_uri: str = ""
    ready_event: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        out = self.stdout_path.read_text(errors="replace")[-1000:]
        err = self.stderr_path.read_text(errors="replace")[-chars:]
        return f"voicebot exit={self.proc.poll()}\n--- stdout tail\n{out}\n--- stderr tail\n{err}"

    def log_events(self, name: str) -> list[dict[str, Any]]:
        """Every JSON log line whose ``event`` is ``name``."""
        found = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            if name not in line:
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    found.append(event)
        return found

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def calls_show(self, call_id: str) -> dict[str, Any] | None:
        """``voicebot calls --db DB show CALL_ID --json`` (the CLI the README documents)."""
        result = subprocess.run(
            [str(VOICEBOT), "calls", "--records-db", str(self.records_db), "show", call_id, "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            return None
        record: dict[str, Any] = json.loads(result.stdout)
        return record

    def wait_call_ended(self, call_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The call's record once its end is written (polled through the CLI)."""
        deadline = time.monotonic() + timeout_s
        record: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            record = self.calls_show(call_id)
            if record is not None and record["summary"].get("ended_at") is not None:
                return record
            time.sleep(0.5)
        raise AssertionError(
            f"call {call_id} has no recorded end after {timeout_s} s; last record: {record}\n"
            f"{self.log_tail()}"
        )


def write_config(path: Path, *, tts_cache: Path, recognizer: dict[str, object] | None = None,
                 extra_sections: str = "") -> Path:
    """A voicebot TOML config: JSON logs at info, a shared TTS cache, optional [recognizer] keys."""
    lines = ["[tts]", f"cache_dir = {json.dumps(str(tts_cache))}", "", "[log]", 'format = "json"',
             'level = "info"', ""]
    if recognizer:
        lines.append("[recognizer]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in recognizer.items()]
        lines.append("")
    path.write_text("\n".join(lines) + extra_sections)
    return path


def start_voicebot(
    workdir: Path,
    *,
    tts_cache: Path,
    command: Sequence[str] = ("run",),
    dialplan: Path | None = None,
    transfer_target: str | None = None,
    stt_endpoint: str | None = None,
    recognizer: dict[str, object] | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 180.0,
    wait_ready: bool = True,
    sip_port: int | None = None,
    config_sections: str = "",
) -> Voicebot:
    """Start ``voicebot <command>`` on 127.0.0.1 with free ports (or the given SIP port, e.g. to
    restart an instance where a proxy expects it) and wait for ``app.ready``."""
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port = sip_port if sip_port is not None else free_udp_port()
    rtp_ports = free_even_port_range()
    records_db = workdir / "calls.db"
    config = write_config(workdir / "voicebot.toml", tts_cache=tts_cache, recognizer=recognizer,
                          extra_sections=config_sections)
    args = [str(VOICEBOT), "--log-format", "json", *command, "--config", str(config),
            "--sip-listen", f"127.0.0.1:{sip_port}", "--rtp-ports", f"{rtp_ports[0]}-{rtp_ports[1]}",
            "--records-db", str(records_db)]
    if dialplan is not None:
        args += ["--dialplan", str(dialplan)]
    if transfer_target is not None:
        args += ["--transfer-target", transfer_target]
    if stt_endpoint is not None:
        args += ["--stt-endpoint", stt_endpoint]
    args += list(extra_args)
    stdout_path, stderr_path = workdir / "voicebot.stdout", workdir / "voicebot.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    bot = Voicebot(proc, workdir, sip_port, rtp_ports, records_db, stdout_path, stderr_path)
    if wait_ready:
        wait_for_ready(bot, ready_timeout_s)
    return bot


def wait_for_ready(bot: Voicebot, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = bot.log_events("app.ready")
        if events:
            bot.ready_event = events[0]
            match = re.search(r"sips?:[^\s\"']+", bot.stdout_path.read_text(errors="replace"))
            bot.sip_uri = match.group(0) if match else f"sip:bot@127.0.0.1:{bot.sip_port}"
            return
        if bot.proc.poll() is not None:
            raise AssertionError(f"voicebot exited before app.ready\n{bot.log_tail()}")
        time.sleep(0.2)
    bot.stop()
    raise AssertionError(f"voicebot logged no app.ready within {timeout_s} s\n{bot.log_tail()}")


# ----------------------------------------------------------------------------------- sipp callers


def render_scenario(template: str, out_dir: Path, name: str | None = None, **values: object) -> Path:
    """``scenarios/<template>.xml`` with ``{key}`` placeholders filled; returns the path without .xml."""
    text = (SCENARIOS / f"{template}.xml").read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    leftover = re.findall(r"\{[a-z_]+\}", text)
    if leftover:
        raise ValueError(f"scenario {template}: placeholders not filled: {sorted(set(leftover))}")
    stem = out_dir / (name or template)
    stem.with_suffix(".xml").write_text(text)
    return stem


def new_call_id(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:12]}@127.0.0.1"


async def call(
    bot: Voicebot,
    template: str,
    tmp_path: Path,
    *,
    call_id: str,
    timeout_s: float,
    name: str | None = None,
    **values: object,
) -> SippResult:
    """One sipp call of ``template`` to the robot with Call-ID ``call_id`` (sipp ``-cid_str``)."""
    stem = render_scenario(template, tmp_path, name, **values)
    # run_sipp resolves scenarios under tests/sip/scenarios; an absolute stem replaces that folder.
    return await run_sipp(
        str(stem), tmp_path, remote=("127.0.0.1", bot.sip_port), timeout_s=timeout_s,
        extra=("-cid_str", call_id, "-trace_msg", "-message_file", str(stem) + ".messages.log"),
    )


async def answer(template: str, tmp_path: Path, *, local_port: int, timeout_s: float,
                 name: str | None = None, **values: object) -> SippResult:
    """sipp as the called party: one call of ``template`` answered on ``local_port``."""
    stem = render_scenario(template, tmp_path, name, **values)
    return await run_sipp(
        str(stem), tmp_path, local_port=local_port, timeout_s=timeout_s,
        extra=("-trace_msg", "-message_file", str(stem) + ".messages.log"),
    )


def sipp_messages(tmp_path: Path, template_name: str) -> str:
    path = tmp_path / f"{template_name}.messages.log"
    return path.read_text(errors="replace") if path.exists() else ""


def explain(result: SippResult, tmp_path: Path, template_name: str, bot: Voicebot) -> str:
    """A failed call's story: sipp's exit and error log, the SIP messages it saw, the robot's log tail."""
    messages = sipp_messages(tmp_path, template_name)[-4000:]
    return f"{result.explain()}\n--- SIP messages sipp saw\n{messages}\n{bot.log_tail()}"


# ----------------------------------------------------------------------------------- capture on lo


class Capture:
    """``dumpcap`` on lo for UDP to or from a port range, written as classic pcap."""

    def __init__(self, path: Path, ports: tuple[int, int]) -> None:
        self.path = path
        self.ports = ports
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr_path = path.with_suffix(".dumpcap.log")

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 15.0) -> None:
        with self._stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                ["dumpcap", "-q", "-P", "-i", "lo", "-f",
                 f"udp and portrange {self.ports[0]}-{self.ports[1]}", "-w", str(self.path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )
        # dumpcap writes the pcap header once the capture is live.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.path.exists() and self.path.stat().st_size >= 24:
                time.sleep(0.2)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"dumpcap did not start: {self._stderr_path.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def datagrams(self) -> list[UdpDatagram]:
        return list(read_udp(self.path)) if self.path.exists() and self.path.stat().st_size >= 24 else []


@dataclass(frozen=True, slots=True)
class RtpSeen:
    time_s: float
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    rms: int  # of the decoded payload (PCMU/PCMA), 0 for events


def rtp_packets(datagrams: Sequence[UdpDatagram], *, src_port: int | None = None,
                dst_port: int | None = None) -> list[RtpSeen]:
    """RTP packets of one direction, in capture order (RFC 3550 §5.1 fixed header)."""
    seen: list[RtpSeen] = []
    for d in datagrams:
        if (src_port is not None and d.src[1] != src_port) or (dst_port is not None and d.dst[1] != dst_port):
            continue
        data = d.payload
        if len(data) < 12 or data[0] >> 6 != 2:
            continue
        cc = data[0] & 0x0F
        payload_type = data[1] & 0x7F
        payload = data[12 + 4 * cc :]
        if payload_type == 0:
            rms = audioop.rms(audioop.ulaw2lin(payload, 2), 2)
        elif payload_type == 8:
            rms = audioop.rms(audioop.alaw2lin(payload, 2), 2)
        else:
            rms = 0
        seen.append(RtpSeen(d.time_s, payload_type, int.from_bytes(data[2:4], "big"),
                            int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big"), rms))
    return seen


def flows(datagrams: Sequence[UdpDatagram],
          rtp_ports: tuple[int, int]) -> dict[int, dict[str, list[RtpSeen]]]:
    """Per robot RTP port: ``{"robot": packets it sent, "caller": packets it received}``."""
    low, high = rtp_ports
    ports = {d.src[1] for d in datagrams if low <= d.src[1] <= high} | {
        d.dst[1] for d in datagrams if low <= d.dst[1] <= high}
    return {p: {"robot": rtp_packets(datagrams, src_port=p), "caller": rtp_packets(datagrams, dst_port=p)}
            for p in sorted(ports)}


def sound_runs(packets: Sequence[RtpSeen], gap_s: float = 0.3) -> Iterator[list[RtpSeen]]:
    """Runs of packets with no gap longer than ``gap_s`` between consecutive ones."""
    run: list[RtpSeen] = []
    for p in packets:
        if run and p.time_s - run[-1].time_s > gap_s:
            yield run
            run = []
        run.append(p)
    if run:
        yield run
