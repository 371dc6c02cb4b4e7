"""ASCII checks for text from outside (SIP, HTTP, config files, webhook answers, recognizer text)."""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """``1*DIGIT``: ASCII 0-9 only. ``str.isdigit`` also takes '²' (which ``int`` then refuses)
    and '١' (which ``int`` reads as 1), so a number from outside is checked with this first."""
    return text.isascii() and text.isdigit()


__all__ = ["is_digits"]
