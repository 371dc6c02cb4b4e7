"""The scale-out topology on loopback: Debian's kamailio running the shipped
``docker/kamailio/kamailio.cfg`` (rendered for 127.0.0.1 through its ``-A`` defines), N ``voicebot
run`` instances and one shared ``voicebot stt-server``, plus sipp callers through the front.

Used by tests/scaleout and bench/scaleout_bench.py. Everything is bounded in time and stops itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.harness import REPO, Voicebot, start_voicebot
from tests.sip.peers import free_media_port, free_udp_port

KAMAILIO_CFG = REPO / "docker" / "kamailio" / "kamailio.cfg"
VOICEBOT = Path(sys.executable).with_name("voicebot")


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("kamailio not found (scripts/setup installs the Debian package kamailio)")
    return found


@dataclass
class Front:
    """A running kamailio front and where its log goes."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    port: int
    ctl: str
    log_path: Path
    instances: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def routes(self) -> list[tuple[str, str]]:
        """(Call-ID, instance URI) for every INVITE the front sent on, failovers included."""
        return re.findall(r"vb-route (\S+) -> (\S+)", self.log())

    def destinations(self) -> dict[str, str]:
        """Each instance URI -> dispatcher flags ("AP" active+probing, "IP" inactive, ...)."""
        kamcmd = shutil.which("kamcmd") or shutil.which("kamcmd", path="/usr/sbin") or "kamcmd"
        out = subprocess.run([kamcmd, "-s", self.ctl, "dispatcher.list"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", out))

    def wait_destination(self, uri: str, *, active: bool, timeout_s: float) -> float:
        """Seconds until ``uri`` is (in)active in the dispatcher; raises after ``timeout_s``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            flags = self.destinations().get(uri, "")
            if flags and flags.startswith("A") == active:
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"{uri} not {'active' if active else 'inactive'} after {timeout_s} s: "
                             f"{self.destinations()}\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_front(workdir: Path, instance_ports: list[int]) -> Front:
    """kamailio with the shipped config on 127.0.0.1, dispatching to the given SIP ports."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()
    ds_list = workdir / "dispatcher.list"
    instances = [f"sip:127.0.0.1:{p}" for p in instance_ports]
    ds_list.write_text("".join(f"1 {uri}\n" for uri in instances))
    ctl = f"unix:{workdir}/kamailio_ctl"
    log_path = workdir / "kamailio.log"
    args = [kamailio_binary(), "-f", str(KAMAILIO_CFG), "-DD", "-E", "-n", "2",
            "-A", f"VB_LISTEN=udp:127.0.0.1:{port}", "-A", f"VB_ADVERTISE=127.0.0.1:{port}",
            "-A", f'VB_DISPATCHER_LIST="{ds_list}"', "-A", f'VB_CTL_SOCKET="{ctl}"',
            "-Y", str(workdir), "-P", str(workdir / "kamailio.pid")]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    front = Front(proc, workdir, port, ctl, log_path, instances)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kamailio exited ({proc.returncode}):\n{front.log()[-3000:]}")
        if Path(ctl.removeprefix("unix:")).exists() and front.destinations():
            return front
        time.sleep(0.2)
    front.stop()
    raise AssertionError(f"kamailio did not come up:\n{front.log()[-3000:]}")


@dataclass
class Recognizer:
    proc: subprocess.Popen[bytes]
    endpoint: str
    key: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_recognizer(workdir: Path, *, timeout_s: float = 180.0) -> Recognizer:
    """One shared ``voicebot stt-server`` on 127.0.0.1 with an API key; waits until it serves."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()  # a free UDP port number is very likely free for TCP too
    key = "scaleout-" + os.urandom(6).hex()
    log_path = workdir / "stt-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(VOICEBOT), "--log-format", "json", "stt-server", "--listen", f"127.0.0.1:{port}"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "VOICEBOT_STT_API_KEYS": key})
    rec = Recognizer(proc, f"127.0.0.1:{port}", key, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"stt-server exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(rec.endpoint) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return rec
        time.sleep(0.5)
    rec.stop()
    raise AssertionError(f"stt-server not serving after {timeout_s} s")


def start_instance(workdir: Path, *, tts_cache: Path, recognizer: Recognizer, sip_port: int,
                   grace_s: float = 20.0) -> Voicebot:
    return start_voicebot(
        workdir, tts_cache=tts_cache, stt_endpoint=recognizer.endpoint, sip_port=sip_port,
        env={"VOICEBOT_STT_API_KEY": recognizer.key}, extra_args=("--grace-s", str(grace_s)),
        ready_timeout_s=120)


# How long a started sipp is watched for an immediate exit on a port taken by another process.
SIPP_BIND_CHECK_S = 0.5
SIPP_BIND_ERRORS = ("Unable to bind", "Address already in use")


@dataclass
class SippRun:
    """A sipp caller run through the front: ``calls`` calls at ``rate`` per second, each held
    ``hold_ms`` after the answer, then BYE. Exit code 0 means every call succeeded."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    name: str

    def wait(self, timeout_s: float) -> tuple[int, int, int]:
        """(exit code, successful calls, failed calls) from sipp's final statistics."""
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        stats = sorted(self.workdir.glob(f"{self.name}*_stat.csv")) or sorted(self.workdir.glob("*.csv"))
        ok = failed = -1
        if stats:
            lines = stats[-1].read_text().strip().splitlines()
            header, last = lines[0].split(";"), lines[-1].split(";")
            row = dict(zip(header, last, strict=False))
            ok, failed = int(row.get("SuccessfulCall(C)", -1)), int(row.get("FailedCall(C)", -1))
        return self.proc.returncode, ok, failed

    def errors(self) -> str:
        found = sorted(self.workdir.glob("*_errors.log"))
        return found[-1].read_text(errors="replace")[-3000:] if found else ""


def start_callers(workdir: Path, front: Front, *, name: str, calls: int, rate: float,
                  hold_ms: int) -> SippRun:
    run_dir = workdir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario = Path(__file__).with_name("uac_via_proxy.xml")
    # Our ports are free when picked, but another process may bind one before sipp does: sipp then
    # exits at once with "Unable to bind ..." (a CI run lost a whole test to that), so such a start
    # is retried with new ports. A sipp that is still running after the check is placing calls.
    for _ in range(3):
        for stale in run_dir.glob("*"):
            stale.unlink()
        args = ["sipp", "-sf", str(scenario), f"127.0.0.1:{front.port}", "-s", "bot", "-i", "127.0.0.1",
                "-p", str(free_udp_port()), "-mp", str(free_media_port()), "-m", str(calls), "-r", str(rate),
                "-l", str(calls), "-d", str(hold_ms), "-timeout", "120", "-timeout_error",
                "-recv_timeout", "20000", "-nostdin", "-trace_stat",
                # A 180 relayed after the 200 (kamailio's worker processes can forward two responses
                # sent back to back in either order) is noise a real phone ignores; sipp would abort
                # the answered call on it. Failed calls still count: a missing 200 or BYE answer.
                "-default_behaviors", "all,-abortunexp",
                "-stf", str(run_dir / f"{name}_stat.csv"), "-fd", "1", "-trace_err",
                "-error_file", str(run_dir / f"{name}_errors.log")]
        proc = subprocess.Popen(args, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        run = SippRun(proc, run_dir, name)
        deadline = time.monotonic() + SIPP_BIND_CHECK_S
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None or not any(m in run.errors() for m in SIPP_BIND_ERRORS):
            return run
    return run
