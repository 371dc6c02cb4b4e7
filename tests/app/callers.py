"""A sipp caller for the call-pipeline tests: speaks (a pcap of synthesized telephone speech or a
DTMF pcap), then ends the way the test expects: the robot's REFER (answered 202, then NOTIFY
sipfrag 100 and 200, then the robot's BYE), the robot's BYE, or its own BYE after a pause."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.sip.peers import SippResult, free_media_port, free_udp_port
from tests.telephony.sipp import run_uac
from voicebot.testing.pcap import write_rtp_pcap
from voicebot.testing.speech import silence, telephone_speech

DTMF_PCAP_DIR = Path("/usr/share/sip-tester")

_HEADERS = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:+15550002222@[local_ip]:[local_port]>;tag=[pid]Caller[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70"""

_SDP = """      v=0
      o=caller 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ptime:20"""

_OK = """  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""


def _request(method: str, cseq: int, *, first: bool = False, body: str = "") -> str:
    target = "sip:[service]@[remote_ip]:[remote_port]" if first else "[next_url]"
    headers = _HEADERS.format(to_tag="" if first else "[peer_tag_param]", cseq=cseq, method=method)
    if body:
        headers += "\n      Content-Type: application/sdp"
    retrans = "" if method == "ACK" else ' retrans="500"'
    return (f"  <send{retrans}>\n    <![CDATA[\n      {method} {target} SIP/2.0\n{headers}\n"
            f"      Content-Length: [len]\n\n{body}\n    ]]>\n  </send>\n")


def _notify(cseq: int, state: str, frag: str) -> str:
    return f"""  <send retrans="500">
    <![CDATA[
      NOTIFY [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:+15550002222@[local_ip]:[local_port]>;tag=[pid]Caller[call_number]
      To: [$bot]
      Call-ID: [call_id]
      CSeq: {cseq} NOTIFY
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Event: refer
      Subscription-State: {state}
      Content-Type: message/sipfrag;version=2.0
      Content-Length: [len]

      {frag}
    ]]>
  </send>
  <recv response="200"/>
"""


def scenario(pcap: Path | None, *, end: str, pause_ms: int = 0, refer_status: str = "SIP/2.0 200 OK") -> str:
    """``end``: "refer" (expect REFER, accept it, report ``refer_status``, then expect BYE),
    "wait_bye" (expect the robot's BYE), "bye" (hang up after ``pause_ms``)."""
    out = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="voicebot app caller">',
           _request("INVITE", 1, first=True, body=_SDP),
           '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
           '  <recv response="200" rrs="true"/>\n',
           _request("ACK", 1)]
    if pcap is not None:
        out.append(f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n')
    if end == "refer":
        out.append('  <recv request="REFER" rrs="true">\n    <action>\n'
                   '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="bot"/>\n'
                   '      <ereg regexp=".*" search_in="hdr" header="Refer-To:" assign_to="referto"/>\n'
                   '    </action>\n  </recv>\n')
        out.append(_OK.replace("200 OK", "202 Accepted"))
        out.append(_notify(2, "active;expires=60", "SIP/2.0 100 Trying"))
        final_state = "terminated;reason=noresource"
        out.append(_notify(3, final_state, refer_status))
        # Success: the robot's BYE ends its side (RFC 5589). Failure: the dialplan apologizes, hangs up.
        out.append('  <recv request="BYE"/>\n' + _OK)
        out.append('  <Reference variables="referto"/>\n')
    elif end == "wait_bye":
        out.append('  <recv request="BYE"/>\n' + _OK)
    else:
        out.append(f'  <pause milliseconds="{pause_ms}"/>\n')
        out.append(_request("BYE", 2))
        out.append('  <recv response="200" crlf="true"/>\n')
    out.append("</scenario>\n")
    return "\n".join(out)


def speech_pcap(path: Path, text: str, *, lead_ms: int = 1000, tail_ms: int = 1500) -> Path:
    """Telephone-band espeak-ng speech (G.711 round trip) with silence around it, as a PCMU pcap."""
    pcm = silence(lead_ms) + telephone_speech(text) + silence(tail_ms)
    write_rtp_pcap(path, pcm, payload_type=0)
    return path


async def run_caller(text: str, tmp_path: Path, remote: tuple[str, int], *, name: str = "caller",
                     timeout_s: float = 40.0, extra: tuple[str, ...] = ()) -> SippResult:
    """Run the scenario ``text`` once against ``remote`` (sipp on ephemeral ports, a start that lost
    its ports to another process retried: tests.telephony.sipp.run_uac)."""
    return await run_uac(text, tmp_path, remote, name=name, timeout_s=timeout_s, extra=extra)


def answering_scenario(pcap: Path | None) -> str:
    """sipp as the called party (UAS): answer, say ``pcap`` (from right after the ACK), expect BYE."""
    out = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="voicebot app callee">',
           '  <recv request="INVITE"/>\n',
           """  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Callee[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

""" + _SDP + """
    ]]>
  </send>
""",
           '  <recv request="ACK"/>\n']
    if pcap is not None:
        out.append(f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n')
    out.append('  <recv request="BYE"/>\n' + _OK)
    out.append("</scenario>\n")
    return "\n".join(out)


async def start_callee(text: str, tmp_path: Path, *, name: str = "callee",
                       timeout_s: float = 60.0) -> tuple[asyncio.subprocess.Process, int]:
    """Start sipp as a UAS for one call on an ephemeral port; returns the process and its SIP port."""
    path = tmp_path / f"{name}.xml"
    path.write_text(text)
    port = free_udp_port()
    args = ["sipp", "-sf", str(path), "-m", "1", "-i", "127.0.0.1", "-p", str(port),
            "-mp", str(free_media_port()), "-nostdin", "-skip_rlimit", "-timeout", f"{int(timeout_s)}s",
            "-timeout_error", "-trace_err", "-error_file", str(tmp_path / f"{name}.errors.log")]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    await asyncio.sleep(0.3)  # sipp binds its port before it reads the first INVITE
    return proc, port


# The registrar's digest challenge to a REGISTER.
_REGISTER_CHALLENGE = """  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="pbx.test", nonce="4f1c2a0b9d", qop="auth", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>
"""

REGISTRAR_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="registrar: challenge, then accept">
  <recv request="REGISTER"/>
""" + _REGISTER_CHALLENGE + """  <recv request="REGISTER">
    <action>
      <ereg regexp="username=\\"robot\\"" search_in="hdr" header="Authorization:" check_it="true"
            assign_to="user"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=120
      Content-Length: 0

    ]]>
  </send>
  <Reference variables="user"/>
</scenario>
"""

# The registrar's 200 OK to a REGISTER (with its tag).
_REGISTER_OK = """  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""

# The same registrar, then the robot's goodbye: a REGISTER with Expires: 0 when it shuts down.
REGISTRAR_UNREGISTER_SCENARIO = REGISTRAR_SCENARIO.replace(
    """  <Reference variables="user"/>""", """  <recv request="REGISTER" timeout="30000">
    <action>
      <ereg regexp="(Expires: *0[^0-9]|expires=0[^0-9])" search_in="msg" check_it="true" assign_to="gone"/>
    </action>
  </recv>
""" + _REGISTER_OK + """  <Reference variables="user,gone"/>""")

# A registrar slow to answer the first REGISTER (100 Trying at once, so it is not retransmitted, the
# challenge a second later): the robot shuts down meanwhile, and the answer to that REGISTER must be
# followed by a REGISTER with Expires: 0, or the binding outlives the robot until it expires.
REGISTRAR_SLOW_FIRST_ANSWER_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="registrar: slow first answer, then the unREGISTER">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="1000"/>
""" + _REGISTER_CHALLENGE + """  <recv request="REGISTER" timeout="30000">
    <action>
      <ereg regexp="(Expires: *0[^0-9]|expires=0[^0-9])" search_in="msg" check_it="true" assign_to="gone"/>
      <ereg regexp="username=\\"robot\\"" search_in="hdr" header="Authorization:" check_it="true"
            assign_to="user"/>
    </action>
  </recv>
""" + _REGISTER_OK + """  <Reference variables="user,gone"/>
</scenario>
"""
