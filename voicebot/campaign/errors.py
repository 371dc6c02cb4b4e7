"""Errors of the campaign dialer: a bad contacts file, a bad setting, an unknown campaign."""

from __future__ import annotations

from voicebot.errors import VoicebotError


class CampaignError(VoicebotError):
    """A campaign cannot be created or run; the message says which input is wrong and how."""


class ContactsError(CampaignError):
    """The contacts CSV is invalid; the message lists every bad row as ``file:line: problem``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class UnknownCampaign(CampaignError):
    pass
