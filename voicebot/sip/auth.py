"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617 digest with qop=auth, RFC 8760 SHA-256).

Client side: :func:`parse_challenge` reads a ``WWW-Authenticate`` (401) or ``Proxy-Authenticate``
(407) value and :func:`authorization` computes the matching ``Authorization`` /
``Proxy-Authorization`` value. Server side: :class:`DigestServer` issues nonces (from an
injected random source, with an expiry driven by the ``now`` it is given) and checks responses.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import parse_auth_params, quote
from voicebot.sip.message import Request, Response

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password for digest authentication (the password never appears in repr)."""

    username: str
    password: str = field(repr=False)
    realm: str | None = None  # None: answer any realm


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """Parse a Digest challenge; anything else raises :class:`SipParseError`."""
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme {scheme!r} (only Digest)")
    if "realm" not in params or "nonce" not in params:
        raise SipParseError("Digest challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _HASHES:
        raise SipParseError(f"unsupported digest algorithm {algorithm!r} (MD5 or SHA-256)")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode("utf-8")).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """The ``response`` value of RFC 2617 §3.2.2.1 (qop=auth or no qop)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def authorization(
    challenge: Challenge, credentials: Credentials, *, method: str, uri: str, cnonce: str, nc: int = 1
) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` (qop=auth when offered)."""
    if challenge.qop and "auth" not in challenge.qop:
        raise SipParseError(f"server offers only qop={','.join(challenge.qop)}; we support qop=auth")
    qop = "auth" if challenge.qop else None
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=challenge.algorithm,
        username=credentials.username,
        password=credentials.password,
        realm=challenge.realm,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    parts = [
        f"username={quote(credentials.username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={quote(cnonce)}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def authorized_request(
    request: Request, response: Response, credentials: Credentials, *, cseq: int, via: str, cnonce: str
) -> Request | None:
    """``request`` again with credentials for the 401/407's challenges, a new Via and CSeq
    (RFC 3261 §22.2, §8.1.3.5); None when no challenge can be answered with ``credentials``."""
    answer_header = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
    values = _answers(
        response, credentials, method=request.method, uri=request.uri.serialize(), cnonce=cnonce
    )
    if not values:
        return None
    headers = request.headers.replaced("Via", [via]).replaced("CSeq", [f"{cseq} {request.method}"])
    headers = headers.without(answer_header).plus(*((answer_header, v) for v in values))
    return request.with_headers(headers)


def can_answer(response: Response, credentials: Credentials) -> bool:
    """Whether :func:`authorized_request` can answer this 401/407 with ``credentials``: some
    challenge parses, is for their realm (when they name one) and offers what we support."""
    return bool(_answers(response, credentials, method="REGISTER", uri="sip:invalid", cnonce="0"))


def _answers(
    response: Response, credentials: Credentials, *, method: str, uri: str, cnonce: str
) -> list[str]:
    header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
    values: list[str] = []
    for raw in response.headers.get_all(header):
        try:
            challenge = parse_challenge(raw)
            if credentials.realm is not None and credentials.realm != challenge.realm:
                continue
            values.append(authorization(challenge, credentials, method=method, uri=uri, cnonce=cnonce))
        except SipParseError:
            continue
    return values


class DigestServer:
    """Challenges inbound requests and verifies their digest responses (RFC 3261 §22.2).

    Nonces are random (from the caller), remembered until ``nonce_ttl_s`` after issue, and at most
    ``max_nonces`` are kept so a flood of unauthenticated requests cannot grow memory.
    """

    def __init__(
        self, realm: str, users: dict[str, str], *, nonce_ttl_s: float = 300.0, max_nonces: int = 10_000
    ) -> None:
        self.realm = realm
        self._users = dict(users)
        self._nonce_ttl_s = nonce_ttl_s
        self._max_nonces = max_nonces
        self._nonces: dict[str, float] = {}

    def challenge(self, nonce: str, now: float, *, stale: bool = False) -> str:
        """A WWW-Authenticate value with a fresh nonce (``nonce`` comes from the caller's RNG)."""
        if len(self._nonces) >= self._max_nonces:
            # nonces are inserted in issue order with one TTL, so the first is the oldest: O(1)
            # where a min() over 10k nonces cost every challenge of a flood a full scan.
            del self._nonces[next(iter(self._nonces))]
        self._nonces[nonce] = now + self._nonce_ttl_s
        value = f'Digest realm={quote(self.realm)}, nonce={quote(nonce)}, algorithm=MD5, qop="auth"'
        return value + (", stale=true" if stale else "")

    def verify(self, value: str, *, method: str, now: float) -> tuple[bool, bool]:
        """Check an Authorization value: ``(ok, stale)``; stale means re-challenge with a new nonce."""
        try:
            scheme, params = parse_auth_params(value)
        except SipParseError:
            return False, False
        if scheme.lower() != "digest" or params.get("realm") != self.realm:
            return False, False
        nonce = params.get("nonce", "")
        expiry = self._nonces.get(nonce)
        if expiry is None or expiry < now:
            self._nonces.pop(nonce, None)
            return False, expiry is not None
        password = self._users.get(params.get("username", ""))
        algorithm = params.get("algorithm", "MD5").upper()
        if password is None or algorithm not in _HASHES:
            return False, False
        expected = digest_response(
            algorithm=algorithm,
            username=params.get("username", ""),
            password=password,
            realm=self.realm,
            nonce=nonce,
            method=method,
            uri=params.get("uri", ""),
            qop=params.get("qop"),
            nc=params.get("nc", ""),
            cnonce=params.get("cnonce", ""),
        )
        return hmac.compare_digest(expected, params.get("response", "")), False
