"""Helpers that run real SIP peers (sipp, baresip) on 127.0.0.1 for the adapter and e2e tiers."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"


def free_udp_port() -> int:
    """An ephemeral UDP port for a peer that cannot bind port 0 itself (tiny reuse race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_media_port() -> int:
    """A base port for sipp's ``-mp``: sipp binds audio RTP on P and P+1 (RTCP) and video on P+2 and
    P+3, so all four must be free (a lone free P let a CI run lose a sipp start to "Unable to bind
    video RTP socket"). Another process may still take one before sipp binds: callers retry."""
    for _ in range(200):
        base = free_udp_port() & ~1
        if base + 3 > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for k in range(4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", base + k))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError("no block of 4 free UDP ports found on 127.0.0.1")


@dataclass
class SippResult:
    returncode: int
    errors: str
    stderr: str

    def explain(self) -> str:
        return f"sipp exit {self.returncode}\nerrors:\n{self.errors[-3000:]}\nstderr:\n{self.stderr[-2000:]}"


async def run_sipp(
    scenario: str,
    tmp_path: Path,
    *,
    remote: tuple[str, int] | None = None,
    local_port: int | None = None,
    service: str = "bot",
    timeout_s: float = 20.0,
    extra: tuple[str, ...] = (),
    calls: int = 1,
) -> SippResult:
    """Run ``calls`` sipp calls of ``scenarios/<scenario>.xml``; returns its exit code and error log."""
    # The media port is picked by us (sipp's default 6000 would collide between engineers); another
    # process can take it between our check and sipp's bind, so such a start is retried.
    for _ in range(3):
        result = await _run_sipp_once(
            scenario, tmp_path, remote, local_port, service, timeout_s, extra, calls
        )
        if "Unable to bind" not in result.stderr and "Address already in use" not in result.stderr:
            break
    return result


async def _run_sipp_once(
    scenario: str,
    tmp_path: Path,
    remote: tuple[str, int] | None,
    local_port: int | None,
    service: str,
    timeout_s: float,
    extra: tuple[str, ...],
    calls: int,
) -> SippResult:
    error_file = tmp_path / f"{scenario}.errors.log"
    args = [
        "sipp",
        "-sf",
        str(SCENARIOS / f"{scenario}.xml"),
        "-m",
        str(calls),
        "-i",
        "127.0.0.1",
        "-mp",
        str(free_media_port()),
        "-s",
        service,
        "-nostdin",
        "-skip_rlimit",
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(error_file),
        *extra,
    ]
    if local_port is not None:
        args += ["-p", str(local_port)]
    if remote is not None:
        args.append(f"{remote[0]}:{remote[1]}")
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout_s + 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    errors = error_file.read_text(errors="replace") if error_file.exists() else ""
    return SippResult(proc.returncode or 0, errors, stderr.decode(errors="replace"))
