"""Inbound access control: trusted source networks (trunk CIDRs) and a per-source token bucket.

The rate limiter keeps one bucket per source IP for requests (not retransmissions of a live
transaction, not ACKs), so a scanner flooding INVITE/OPTIONS from one address runs out of tokens
while a trunk's calls keep their own. Buckets are capped in number (least recently used
dropped) so a spoofed-source flood cannot grow memory without bound.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from voicebot.errors import ConfigError


def parse_networks(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for text in networks:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                f"sip.allowed_networks: {text!r} is not an IP network (e.g. 192.0.2.0/24)"
            ) from None
    return tuple(out)


def address_in(ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    return any(addr.version == net.version and addr in net for net in networks)


class RateLimiter:
    """Token bucket per source IP: ``rate_per_s`` refill, ``burst`` capacity."""

    def __init__(self, rate_per_s: float, burst: float, *, max_sources: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ConfigError("sip.rate_limit: rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_sources = max_sources
        self.dropped = 0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def exhausted(self, ip: str, now: float) -> bool:
        """True when ``ip`` has no whole token now (nothing is spent): the user agent drops such a
        source's requests before parsing them, so a flood costs a dict lookup per datagram."""
        bucket = self._buckets.get(ip)
        if bucket is None:
            return False
        tokens, last = bucket
        return tokens + (now - last) * self.rate_per_s < 1.0

    def allow(self, ip: str, now: float) -> bool:
        tokens, last = self._buckets.pop(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.dropped += 1
        self._buckets[ip] = (tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed
