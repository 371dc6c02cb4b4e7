"""RFC 4475 torture messages through the parser and the sans-IO user agent, as the corpus README says."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SipParseError
from voicebot.sip.events import CallReceived, MessageRejected
from voicebot.sip.message import Response, parse_message
from voicebot.sip.useragent import UserAgent

pytestmark = pytest.mark.unit

CORPUS = Path("/work/shared/conformance/rfc4475")
SOURCE = ("192.0.2.200", 40000)

# file -> (parses?, what the UA does): an int is the final response code; "call" means the
# request is processed as a new call (100 Trying, then an CallReceived for the app); None means
# dropped without an answer (responses).
EXPECTED: dict[str, tuple[bool, int | str | None]] = {
    # 3.1.1 valid messages
    # wsinv's To carries a tag: a mid-dialog INVITE for a dialog we do not have (§12.2.2).
    "wsinv": (True, 481),
    "intmeth": (True, 501),
    "esc01": (True, "call"),
    "escnull": (True, 405),
    "esc02": (True, 501),
    "lwsdisp": (True, 200),
    "longreq": (True, "call"),
    "dblreq": (True, 405),
    "semiuri": (True, 200),
    "transports": (True, 200),
    "mpart01": (True, 405),
    "unreason": (True, None),
    "noreason": (True, None),
    # 3.1.2 invalid messages
    "badinv01": (False, 400),
    "clerr": (False, 400),
    "ncl": (False, 400),
    "scalar02": (False, 400),
    "scalarlg": (False, None),
    "quotbal": (False, 400),
    "ltgtruri": (False, 400),
    "lwsruri": (False, 400),
    "lwsstart": (False, 400),
    "trws": (False, 400),
    "escruri": (False, 400),
    "baddate": (False, 400),
    "regbadct": (False, 400),
    "badaspec": (False, 400),
    "baddn": (False, 400),
    "badvers": (False, 505),
    "mismatch01": (False, 400),
    "mismatch02": (False, 400),
    "bigcode": (False, None),
    # 3.2 transaction layer
    "badbranch": (True, 200),
    # 3.3 application layer
    "insuf": (False, 400),
    "unkscm": (True, 416),
    "novelsc": (True, 416),
    "unksm2": (True, 405),
    "bext01": (True, 420),
    "invut": (True, 415),
    "regaut01": (True, 405),
    "multi01": (False, 400),
    "mcl01": (False, 400),
    "bcast": (True, None),
    "zeromf": (True, 200),
    "cparam01": (True, 405),
    "cparam02": (True, 405),
    "regescrt": (True, 405),
    "sdp01": (True, 406),
    # 3.4 backward compatibility
    "inv2543": (True, "call"),
}


def test_corpus_is_complete() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.dat")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_accepts_or_rejects_as_the_table_says(name: str) -> None:
    data = (CORPUS / f"{name}.dat").read_bytes()
    parses, _ = EXPECTED[name]
    if parses:
        parse_message(data)
    else:
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.message  # a reason phrase saying what is wrong


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_user_agent_answers_as_the_table_says(name: str) -> None:
    ua = UserAgent(UaConfig(local_host="192.0.2.1", local_port=5060))
    ua.receive_datagram((CORPUS / f"{name}.dat").read_bytes(), SOURCE, now=0.0)
    sent = ua.datagrams_to_send()
    events = []
    while (event := ua.next_event()) is not None:
        events.append(event)
    _, expected = EXPECTED[name]
    if expected is None:
        assert sent == []
        return
    if expected in (400, 505):
        # The answer to a malformed request copies its (possibly malformed) headers verbatim,
        # so read just its status line.
        assert len(sent) == 1
        version, code, reason = sent[0][0].split(b"\r\n", 1)[0].decode().split(" ", 2)
        assert (version, int(code)) == ("SIP/2.0", expected)
        assert [type(e) for e in events] == [MessageRejected]
        rejected = events[0]
        assert isinstance(rejected, MessageRejected)
        assert reason == rejected.reason and len(reason) > 10
        return
    responses = [(parse_message(d), dest) for d, dest in sent]
    assert all(isinstance(r, Response) for r, _ in responses)
    codes = [r.status_code for r, _ in responses if isinstance(r, Response)]
    if expected == "call":
        assert codes == [100]
        assert [type(e) for e in events] == [CallReceived]
        return
    assert codes[-1] == expected
    final = responses[-1][0]
    assert isinstance(final, Response)
    if expected == 420:
        assert final.headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
    if expected in (415, 406):
        assert final.headers.get("Accept") == "application/sdp"
    if expected == 405:
        assert "INVITE" in (final.headers.get("Allow") or "")
    if expected == 200:
        assert "application/sdp" in (final.headers.get("Accept") or "")


def test_responses_follow_via_port_or_rport() -> None:
    ua = UserAgent(UaConfig())
    ua.receive_datagram((CORPUS / "transports.dat").read_bytes(), SOURCE, now=0.0)
    (data, dest), *_ = ua.datagrams_to_send()
    # No rport: source address, the Via's port (default 5060), and received= added.
    assert dest == (SOURCE[0], 5060)
    response = parse_message(data)
    assert response.top_via.received == SOURCE[0]
    assert len(response.vias) == 5
    ua.receive_datagram((CORPUS / "mpart01.dat").read_bytes(), SOURCE, now=0.0)
    (data, dest), *_ = ua.datagrams_to_send()
    assert dest == SOURCE
    assert parse_message(data).top_via.rport == str(SOURCE[1])


def test_ua_keeps_answering_after_the_whole_corpus() -> None:
    ua = UserAgent(UaConfig(max_calls=1000))
    for path in sorted(CORPUS.glob("*.dat")):
        ua.receive_datagram(path.read_bytes(), SOURCE, now=0.0)
    ua.datagrams_to_send()
    ua.receive_datagram(
        (CORPUS / "zeromf.dat").read_bytes().replace(b"zeromf.", b"again.").replace(b"kdjuw2349i", b"fresh"),
        SOURCE,
        now=1.0,
    )
    (data, _), *_ = ua.datagrams_to_send()
    response = parse_message(data)
    assert isinstance(response, Response) and response.status_code == 200
