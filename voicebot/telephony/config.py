"""Telephony settings: :class:`TelephonyConfig`, and how ``[sip]``/``[rtp]`` of the config become one.

:func:`telephony_config` is the one place the process config is translated (validated already by
``voicebot.config``); :func:`primary_address` is the network probe that picks the address to
advertise when listening on a wildcard.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from voicebot.config import Config

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True, slots=True)
class TelephonyConfig:
    """Everything the SIP user agent and the RTP plane need; the app builds it from voicebot.config.

    ``sip_host``/``sip_port``: where the SIP UDP socket binds (port 0: any free port, tests).
    ``advertised_host``: the address put in Via, Contact and the SDP ``c=`` line (default: ``sip_host``,
    or ``rtp_host`` when ``sip_host`` is a wildcard; set it behind NAT). ``rtp_host``,
    ``rtp_port_min``/``rtp_port_max``: where RTP sockets bind, even ports of the range (``0, 0``: any
    free port, tests). ``max_calls``: concurrent calls, beyond that the SIP layer answers 503.
    ``allowed_networks``: source CIDRs allowed to call in (empty: any). ``inbound_users``: digest
    (user, password) pairs required from sources outside ``allowed_networks``. ``user``: user part of
    our Contact/From. ``rtp_timeout_s`` (default 45 s): hang up a leg that received no RTP for this
    long while not on hold (0 disables). ``symmetric_rtp`` (default True): latch to the first source
    of valid RTP for NAT'd callers (RFC 4961), then accept only that source. ``ring`` (default True):
    send 180 Ringing before the 200. ``jitter_target_ms``/``jitter_max_ms``: jitter buffer bounds.
    """

    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    advertised_host: str | None = None
    rtp_host: str = "127.0.0.1"
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    max_calls: int = 16
    allowed_networks: tuple[str, ...] = ()
    inbound_users: tuple[tuple[str, str], ...] = ()
    user: str = "bot"
    display_name: str | None = None
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    telephone_event_pt: int = 101
    rate_limit_per_s: float = 20.0
    rate_limit_burst: float = 40.0
    answer_timeout_s: float = 120.0
    rtp_timeout_s: float = 45.0
    symmetric_rtp: bool = True
    ring: bool = True
    jitter_target_ms: int = 60
    jitter_max_ms: int = 200
    max_pending_calls: int = 1000
    # Per-source call limits (sources in allowed_networks and on loopback are exempt; see
    # docs/security.md) and RFC 3261 T1 (64*T1 is how long an answered call waits for its ACK).
    max_calls_per_source: int = 8
    max_unconfirmed_per_source: int = 2
    sip_t1_s: float = 0.5

    @property
    def public_host(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        if self.sip_host not in WILDCARD_HOSTS:
            return self.sip_host
        if self.rtp_host not in WILDCARD_HOSTS:
            return self.rtp_host
        return "127.0.0.1"


def primary_address() -> str:
    """The address of the interface that routes outwards (no packet is sent: a UDP connect only
    picks the route), for SDP/Contact when listening on a wildcard without ``public_address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): routed, never answered
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def telephony_config(config: Config) -> TelephonyConfig:
    """The SIP/RTP settings from ``[sip]`` and ``[rtp]``."""
    sip, rtp = config.sip, config.rtp
    rtp_host = rtp.host
    # Listening for SIP on a public or wildcard address with RTP still on the loopback default
    # would answer calls whose media can never arrive: bind RTP where SIP listens.
    if rtp_host == "127.0.0.1" and sip.listen.host not in ("127.0.0.1", "localhost"):
        rtp_host = sip.listen.host
    advertised = sip.public_address.host if sip.public_address else None
    if advertised is None and sip.listen.host in WILDCARD_HOSTS and rtp_host in WILDCARD_HOSTS:
        # A wildcard is not an address a peer can send to (RFC 4566 §5.7 c= needs a real one).
        advertised = primary_address()
    users: tuple[tuple[str, str], ...] = ()
    if sip.inbound_auth_user and sip.inbound_password:
        users = ((sip.inbound_auth_user, sip.inbound_password),)
    return TelephonyConfig(
        sip_host=sip.listen.host, sip_port=sip.listen.port,
        advertised_host=advertised,
        rtp_host=rtp_host, rtp_port_min=rtp.ports.low, rtp_port_max=rtp.ports.high,
        max_calls=sip.max_calls, allowed_networks=sip.trunk_allow, inbound_users=users,
        max_calls_per_source=sip.max_calls_per_source,
        max_unconfirmed_per_source=sip.max_unconfirmed_per_source,
    )


__all__ = ["WILDCARD_HOSTS", "TelephonyConfig", "primary_address", "telephony_config"]
