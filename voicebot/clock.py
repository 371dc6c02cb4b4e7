"""The clock seam for the asyncio edges (telephony, the call pipeline): monotonic seconds.

Protocol cores take ``now`` as an argument; the adapters around them read it from an injected
:class:`Clock` instead of calling ``time.monotonic()`` or ``loop.time()`` themselves, so tests can
drive time and every part of a call reads the same timeline. Production uses :func:`monotonic`
(the same clock as asyncio's default event loop).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Returns monotonic time in seconds (any epoch; only differences mean something)."""

    def __call__(self) -> float: ...


def monotonic() -> float:
    """The production :class:`Clock`: ``time.monotonic()``, which asyncio's loop.time() also is."""
    return time.monotonic()


__all__ = ["Clock", "monotonic"]
