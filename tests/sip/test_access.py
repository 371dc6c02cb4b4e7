"""Trusted networks and the per-source token bucket."""

from __future__ import annotations

import pytest

from voicebot.errors import ConfigError
from voicebot.sip.access import RateLimiter, address_in, parse_networks

pytestmark = pytest.mark.unit


def test_networks_match_v4_and_v6_and_reject_garbage() -> None:
    nets = parse_networks(("192.0.2.0/24", "2001:db8::/32", "198.51.100.7"))
    assert address_in("192.0.2.200", nets)
    assert address_in("[2001:db8::5]", nets)
    assert address_in("198.51.100.7", nets)
    assert not address_in("198.51.100.8", nets)
    assert not address_in("not-an-ip", nets)
    with pytest.raises(ConfigError) as info:
        parse_networks(("10.0.0.0/33",))
    assert (
        info.value.message == "sip.allowed_networks: '10.0.0.0/33' is not an IP network (e.g. 192.0.2.0/24)"
    )


def test_token_bucket_refills_and_counts_drops() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.dropped == 2
    assert limiter.allow("a", 0.5)  # one token back after 0.5 s at 2/s
    assert not limiter.allow("a", 0.5)
    assert limiter.allow("b", 0.5)  # another source has its own bucket


def test_bucket_table_is_bounded() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_sources=100)
    for n in range(1000):
        limiter.allow(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(limiter._buckets) == 100
    with pytest.raises(ConfigError):
        RateLimiter(rate_per_s=0, burst=1)
