"""Dialog construction and in-dialog requests (RFC 3261 §12): route sets over several header lines,
targets without Contact, CSeq spaces, target refresh, strict and loose routers."""

from __future__ import annotations

import pytest

from voicebot.sip.dialog import Dialog
from voicebot.sip.headers import Headers
from voicebot.sip.message import Request, make_response
from voicebot.sip.uri import SipUri

pytestmark = pytest.mark.unit


def invite(*extra: tuple[str, str], contact: str | None = "<sip:alice@10.0.0.1:5070>") -> Request:
    items: list[tuple[str, str]] = [
        ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"),
        *extra,
        ("From", '"Alice" <sip:alice@atlanta.example>;tag=a'),
        ("To", "Bot <sip:bot@10.0.0.2>"),
        ("Call-ID", "d1@10.0.0.1"),
        ("CSeq", "41 INVITE"),
    ]
    if contact is not None:
        items.append(("Contact", contact))
    return Request("INVITE", SipUri(host="10.0.0.2", user="bot"), Headers.of(*items))


def test_uas_route_set_spans_record_route_lines_in_order() -> None:
    request = invite(
        ("Record-Route", "<sip:p1.example;lr>"),
        ("Record-Route", "<sip:p2.example;lr>, <sip:p3.example;lr>"),
    )
    dialog = Dialog.as_uas(request, local_tag="b", local_cseq=0)
    assert dialog.route_set == ("<sip:p1.example;lr>", "<sip:p2.example;lr>", "<sip:p3.example;lr>")
    assert dialog.call_id == "d1@10.0.0.1"
    assert (dialog.local_tag, dialog.remote_tag, dialog.local_cseq, dialog.remote_cseq) == ("b", "a", 0, 41)
    # local/remote keep the display names but drop the tags
    assert dialog.local.serialize() == '"Bot" <sip:bot@10.0.0.2>'
    assert dialog.remote.serialize() == '"Alice" <sip:alice@atlanta.example>'


def test_uac_route_set_is_the_responses_record_route_reversed_across_lines() -> None:
    request = invite()
    ok = make_response(
        request,
        200,
        to_tag="z",
        extra=(
            ("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>"),
            ("Record-Route", "<sip:p3.example;lr>"),
            ("Contact", "<sip:bot@10.0.0.2:5099>"),
        ),
    )
    dialog = Dialog.as_uac(request, ok)
    assert dialog.route_set == ("<sip:p3.example;lr>", "<sip:p2.example;lr>", "<sip:p1.example;lr>")
    assert dialog.remote_cseq is None
    assert (dialog.local_tag, dialog.remote_tag) == ("a", "z")


def test_no_contact_falls_back_to_from_uri_as_uas_and_request_uri_as_uac() -> None:
    request = invite(contact=None)
    assert (
        Dialog.as_uas(request, local_tag="b", local_cseq=1).remote_target.serialize()
        == "sip:alice@atlanta.example"
    )
    ok = make_response(request, 200, to_tag="z")
    assert Dialog.as_uac(request, ok).remote_target.serialize() == "sip:bot@10.0.0.2"


def test_in_dialog_request_has_no_route_without_route_set_and_carries_extra_and_body() -> None:
    dialog = Dialog.as_uas(invite(), local_tag="b", local_cseq=9)
    info = dialog.create_request(
        "INFO",
        via="SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKi",
        contact="<sip:bot@10.0.0.2>",
        extra=(("Content-Type", "application/dtmf-relay"),),
        body=b"Signal=5\r\nDuration=160\r\n",
    )
    assert info.uri.serialize() == "sip:alice@10.0.0.1:5070"
    assert info.headers.get_all("Route") == []
    assert info.headers.get("Max-Forwards") == "70"
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    assert info.call_id == "d1@10.0.0.1"
    assert (info.cseq.seq, info.cseq.method) == (10, "INFO")
    assert info.headers.get("Contact") == "<sip:bot@10.0.0.2>"


def test_explicit_cseq_does_not_advance_the_local_sequence() -> None:
    dialog = Dialog.as_uas(invite(), local_tag="b", local_cseq=5)
    cancel_like = dialog.create_request("ACK", via="v", contact="c", cseq=3)
    assert cancel_like.cseq.seq == 3
    assert dialog.local_cseq == 5
    assert dialog.create_request("BYE", via="v", contact="c").cseq.seq == 6


def test_to_without_remote_tag_has_no_tag_parameter() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, make_response(request, 200))  # an RFC 2543 peer: no To tag
    assert dialog.remote_tag == ""
    bye = dialog.create_request("BYE", via="v", contact="c")
    assert bye.headers.get("To") == '"Bot" <sip:bot@10.0.0.2>'
    assert bye.to_addr.tag is None


def test_target_refresh_from_reinvite_and_ignored_without_or_with_broken_contact() -> None:
    dialog = Dialog.as_uas(invite(), local_tag="b", local_cseq=1)
    reinvite = invite(contact="<sip:alice@10.0.0.77:5080;transport=udp>")
    dialog.update_target(reinvite)
    assert dialog.remote_target.serialize() == "sip:alice@10.0.0.77:5080;transport=udp"
    dialog.update_target(invite(contact=None))
    assert dialog.remote_target.serialize() == "sip:alice@10.0.0.77:5080;transport=udp"
    dialog.update_target(invite(contact="<sip:alice@bad host>"))
    assert dialog.remote_target.serialize() == "sip:alice@10.0.0.77:5080;transport=udp"
    bye = dialog.create_request("BYE", via="v", contact="c")
    assert bye.uri.serialize() == "sip:alice@10.0.0.77:5080;transport=udp"


def test_strict_router_first_with_more_routes_moves_target_to_the_end() -> None:
    request = invite(("Record-Route", "<sip:strict.example>, <sip:loose.example;lr>"))
    dialog = Dialog.as_uas(request, local_tag="b", local_cseq=1)
    bye = dialog.create_request("BYE", via="v", contact="c")
    assert bye.uri.serialize() == "sip:strict.example"
    assert bye.headers.get_all("Route") == ["<sip:loose.example;lr>", "<sip:alice@10.0.0.1:5070>"]
    # the dialog itself is unchanged: the next request is built the same way
    assert dialog.route_set == ("<sip:strict.example>", "<sip:loose.example;lr>")
    assert dialog.remote_target.serialize() == "sip:alice@10.0.0.1:5070"


def test_loose_router_first_keeps_a_later_strict_router_in_route() -> None:
    request = invite(("Record-Route", "<sip:loose.example;lr>, <sip:strict.example>"))
    bye = Dialog.as_uas(request, local_tag="b", local_cseq=1).create_request("BYE", via="v", contact="c")
    assert bye.uri.serialize() == "sip:alice@10.0.0.1:5070"
    assert bye.headers.get_all("Route") == ["<sip:loose.example;lr>", "<sip:strict.example>"]
