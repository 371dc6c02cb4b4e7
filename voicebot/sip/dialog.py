"""Dialog state (RFC 3261 §12): identifiers, route set, remote target, CSeq spaces.

A :class:`Dialog` is created from the request and response that established it (UAS side
§12.1.1, UAC side §12.1.2) and builds the in-dialog requests we send (§12.2.1.1). The user agent
keeps one per call; the transaction layer carries the requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import Headers, NameAddr, parse_name_addr
from voicebot.sip.message import Request, Response
from voicebot.sip.uri import SipUri, Uri


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddr  # our From/To value without tag
    remote: NameAddr  # theirs, without tag
    remote_target: Uri
    route_set: tuple[str, ...]
    local_cseq: int
    remote_cseq: int | None

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_cseq: int) -> Dialog:
        """§12.1.1: route set from Record-Route in order, target from the request's Contact."""
        contacts = request.contacts
        from_addr = request.from_addr
        to_addr = request.to_addr
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=from_addr.tag or "",
            local=NameAddr(to_addr.uri, to_addr.display_name),
            remote=NameAddr(from_addr.uri, from_addr.display_name),
            remote_target=contacts[0].uri if contacts else from_addr.uri,
            route_set=tuple(request.headers.values("Record-Route")),
            local_cseq=local_cseq,
            remote_cseq=request.cseq.seq,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """§12.1.2: route set from Record-Route reversed, target from the response's Contact."""
        contacts = response.contacts
        from_addr = request.from_addr
        to_addr = response.to_addr
        return cls(
            call_id=request.call_id,
            local_tag=from_addr.tag or "",
            remote_tag=to_addr.tag or "",
            local=NameAddr(from_addr.uri, from_addr.display_name),
            remote=NameAddr(to_addr.uri, to_addr.display_name),
            remote_target=contacts[0].uri if contacts else request.uri,
            route_set=tuple(reversed(response.headers.values("Record-Route"))),
            local_cseq=request.cseq.seq,
            remote_cseq=None,
        )

    def update_target(self, message: Request | Response) -> None:
        """A target refresh (re-INVITE or its 2xx) replaces the remote target (§12.2.2)."""
        try:
            contacts = message.contacts
        except SipParseError:
            return
        if contacts:
            self.remote_target = contacts[0].uri

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str,
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1); ``cseq`` None takes the next local number."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri = self.remote_target
        routes = list(self.route_set)
        if routes:
            first = parse_name_addr(routes[0], "Route")
            if isinstance(first.uri, SipUri) and first.uri.param("lr") is None:
                # strict router (RFC 2543): it goes in the Request-URI, the target at the end.
                uri = first.uri
                routes = [*routes[1:], f"<{self.remote_target.serialize()}>"]
        items: list[tuple[str, str]] = [("Via", via), ("Max-Forwards", "70")]
        items += [("Route", r) for r in routes]
        items += [
            ("From", f"{self.local.serialize()};tag={self.local_tag}"),
            ("To", self.remote.serialize() + (f";tag={self.remote_tag}" if self.remote_tag else "")),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", contact),
        ]
        return Request(method=method, uri=uri, headers=Headers.of(*items, *extra), body=body)
