"""sipp as a calling peer with media, for the telephony e2e tests and the SIP benchmark.

:func:`uac_scenario` writes a sipp UAC scenario: INVITE with an SDP offer, ACK, then a list of steps
(play a pcap with ``play_pcap_audio``, pause, re-INVITE for hold/unhold, INFO digit), then BYE (or
wait for our BYE). The SDP ``m=`` port is sipp's own media port (``[media_port]``, where it sends
pcaps from) or a port of the test's own UDP socket that captures what we send.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from tests.sip.peers import SippResult, free_media_port, free_udp_port

_HEADERS = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "SIPp Caller" <sip:+15550001111@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70"""

_CODECS = {
    "PCMU": ("0", "a=rtpmap:0 PCMU/8000"),
    "PCMA": ("8", "a=rtpmap:8 PCMA/8000"),
    "telephone-event": ("101", "a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-16"),
}


@dataclass(frozen=True, slots=True)
class Play:
    """``play_pcap_audio`` of ``pcap`` and wait ``wait_ms`` (sipp plays it in the background)."""

    pcap: Path
    wait_ms: int


@dataclass(frozen=True, slots=True)
class Pause:
    ms: int


@dataclass(frozen=True, slots=True)
class Reinvite:
    """A re-INVITE with ``a=<direction>`` (sendonly = hold, sendrecv = unhold), optionally offering
    other ``codecs`` or moving the media to another ``media_port``."""

    direction: str
    codecs: tuple[str, ...] | None = None
    media_port: int | None = None


@dataclass(frozen=True, slots=True)
class Info:
    """SIP INFO with an application/dtmf-relay digit."""

    digit: str


Step = Play | Pause | Reinvite | Info


def _sdp(codecs: tuple[str, ...], media_port: str, direction: str | None) -> str:
    fmts = " ".join(_CODECS[c][0] for c in codecs)
    lines = [
        "v=0",
        "o=sipp 53655765 [cseq] IN IP[local_ip_type] [local_ip]",
        "s=-",
        "c=IN IP[media_ip_type] [media_ip]",
        "t=0 0",
        f"m=audio {media_port} RTP/AVP {fmts}",
        *(_CODECS[c][1] for c in codecs),
        "a=ptime:20",
    ]
    if direction:
        lines.append(f"a={direction}")
    return "\n".join(f"      {line}" for line in lines)


def _request(method: str, cseq: int, *, first: bool = False, content_type: str = "", body: str = "",
             retrans: bool = True) -> str:
    target = "sip:[service]@[remote_ip]:[remote_port]" if first else "[next_url]"
    start = f"{method} {target} SIP/2.0"
    headers = _HEADERS.format(to_tag="" if first else "[peer_tag_param]", cseq=cseq, method=method)
    if content_type:
        headers += f"\n      Content-Type: {content_type}"
    attrs = ' retrans="500"' if retrans else ""
    text = f"      {start}\n{headers}\n      Content-Length: [len]\n\n{body}\n"
    return f"  <send{attrs}>\n    <![CDATA[\n{text}    ]]>\n  </send>\n"


def _ack(cseq: int) -> str:
    return _request("ACK", cseq, retrans=False)


def uac_scenario(steps: list[Step] | tuple[Step, ...], *,
                 codecs: tuple[str, ...] = ("PCMU", "PCMA", "telephone-event"),
                 media_port: int | None = None, end: str = "bye") -> str:
    """A sipp UAC scenario. ``media_port`` None: sipp's own media port (for pcap playback); an int:
    a port the test listens on. ``end``: "bye" (sipp hangs up) or "wait_bye" (we hang up)."""
    port = "[media_port]" if media_port is None else str(media_port)
    out = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="voicebot telephony test">']
    out.append(_request("INVITE", 1, first=True, content_type="application/sdp",
                        body=_sdp(codecs, port, None)))
    out.append('  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
               '  <recv response="200" rrs="true"/>\n')
    out.append(_ack(1))
    cseq = 1
    for step in steps:
        if isinstance(step, Play):
            out.append(f'  <nop><action><exec play_pcap_audio="{step.pcap}"/></action></nop>\n')
            out.append(f'  <pause milliseconds="{step.wait_ms}"/>\n')
        elif isinstance(step, Pause):
            out.append(f'  <pause milliseconds="{step.ms}"/>\n')
        elif isinstance(step, Reinvite):
            cseq += 1
            new_port = port if step.media_port is None else str(step.media_port)
            out.append(_request("INVITE", cseq, content_type="application/sdp",
                                body=_sdp(step.codecs or codecs, new_port, step.direction)))
            out.append('  <recv response="100" optional="true"/>\n  <recv response="200"/>\n')
            out.append(_ack(cseq))
        elif isinstance(step, Info):
            cseq += 1
            out.append(_request("INFO", cseq, content_type="application/dtmf-relay",
                                body=f"      Signal={step.digit}\n      Duration=160"))
            out.append('  <recv response="200"/>\n')
    if end == "bye":
        out.append(_request("BYE", cseq + 1))
        out.append('  <recv response="200" crlf="true"/>\n')
    else:
        out.append('  <recv request="BYE"/>\n  <send>\n    <![CDATA[\n      SIP/2.0 200 OK\n'
                   '      [last_Via:]\n      [last_From:]\n      [last_To:]\n      [last_Call-ID:]\n'
                   '      [last_CSeq:]\n      Content-Length: 0\n    ]]>\n  </send>\n')
    out.append("</scenario>\n")
    return "\n".join(out)


def uac_rejected_scenario(status_code: int) -> str:
    """INVITE that expects a final ``status_code`` (after optional 100/180) and ACKs it."""
    out = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="voicebot rejects the call">']
    out.append(_request("INVITE", 1, first=True, content_type="application/sdp",
                        body=_sdp(("PCMU", "telephone-event"), "[media_port]", None)))
    out.append('  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
               f'  <recv response="{status_code}"/>\n')
    # RFC 3261 §17.1.1.3: the ACK for a non-2xx final response reuses the INVITE's Via branch.
    ack = _request("ACK", 1, first=True, retrans=False).replace(
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]", "[last_Via:]")
    out.append(ack.replace("To: <sip:[service]@[remote_ip]:[remote_port]>",
                           "To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]"))
    out.append('  <pause milliseconds="200"/>\n</scenario>\n')
    return "\n".join(out)


async def run_uac(scenario: str, tmp_path: Path, remote: tuple[str, int], *, name: str = "uac",
                  timeout_s: float = 30.0, calls: int = 1, extra: tuple[str, ...] = ()) -> SippResult:
    """Write ``scenario`` to ``tmp_path`` and run sipp against ``remote``; like tests.sip.peers.run_sipp,
    a start whose ports another process took between our check and sipp's bind is retried."""
    for _ in range(3):
        result = await _run_uac_once(scenario, tmp_path, remote, name=name, timeout_s=timeout_s,
                                     calls=calls, extra=extra)
        if "Unable to bind" not in result.stderr and "Address already in use" not in result.stderr:
            break
    return result


async def _run_uac_once(scenario: str, tmp_path: Path, remote: tuple[str, int], *, name: str,
                        timeout_s: float, calls: int, extra: tuple[str, ...]) -> SippResult:
    path = tmp_path / f"{name}.xml"
    path.write_text(scenario)
    error_file = tmp_path / f"{name}.errors.log"
    args = [
        "sipp", "-sf", str(path), "-m", str(calls), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_media_port()), "-s", "bot", "-nostdin", "-skip_rlimit",
        "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-trace_err", "-error_file", str(error_file),
        *extra, f"{remote[0]}:{remote[1]}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout_s + 15)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    errors = error_file.read_text(errors="replace") if error_file.exists() else ""
    return SippResult(proc.returncode or 0, errors, stderr.decode(errors="replace"))
