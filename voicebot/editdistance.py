"""Edit distance between two strings. Pure and a leaf: the dialog's sound-alike matching
(voicebot.dialog.phonetic) and the recognizer's carrier-word check (voicebot.stt.hinted) both use
it, and those packages may not import each other (docs/architecture.md)."""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


__all__ = ["levenshtein"]
