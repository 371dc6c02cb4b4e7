"""Errors of the dialog engine."""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.errors import VoicebotError


@dataclass(frozen=True, slots=True)
class DialplanProblem:
    """One thing wrong with a dialplan file, located by file and 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class DialplanError(VoicebotError):
    """A dialplan failed to load; ``problems`` lists every error found, in file order."""

    def __init__(self, problems: list[DialplanProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line)))
        super().__init__("\n".join(str(p) for p in self.problems))


class WebhookError(VoicebotError):
    """A webhook call failed: the peer's HTTP status, a bad answer, or a timeout."""
