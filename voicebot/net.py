"""Address helpers shared by the edges (the recognizer's listen check, the CLI's outbound check)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any loopback IPv4/IPv6 literal (brackets allowed: ``[::1]``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
