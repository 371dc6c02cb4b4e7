"""What a campaign is: its trunk, its contacts, its calling window and its retry policy (frozen data).

A campaign dials every contact with the same dialplan through one trunk. Settings are validated
once when the campaign is created (:func:`validate_settings`) and stored as JSON with it, so a
restarted dialer runs exactly what was created.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voicebot.campaign.errors import CampaignError
from voicebot.errors import VoicebotError
from voicebot.sip.uri import SipUri, parse_uri

MachinePolicy = Literal["retry", "done"]
InterruptedPolicy = Literal["next-window", "never"]

# E.164-ish: an optional +, then 3 to 15 digits (separators are stripped before the check).
_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
_SEPARATORS = re.compile(r"[\s().\-]")
_WINDOW = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")


def normalize_number(text: str) -> str | None:
    """The dialable form of ``text``: a ``sip:``/``sips:`` URI as given, or a phone number without
    separators (``+1 (555) 010-0000`` -> ``+15550100000``); None when it is neither."""
    text = text.strip()
    if text.startswith(("sip:", "sips:")):
        try:
            return text if isinstance(parse_uri(text), SipUri) else None
        except VoicebotError:
            return None
    flat = _SEPARATORS.sub("", text)
    return flat if _NUMBER.match(flat) else None


def check_tz(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Local time of day when a contact may be called: ``start`` <= t < ``end`` (24:00 = midnight)."""

    start: time
    end_minute: int  # minutes after local midnight, 1..1440

    @classmethod
    def parse(cls, text: str) -> CallingWindow:
        m = _WINDOW.match(text.strip())
        if m is None:
            raise CampaignError(f"calling window {text!r} is not HH:MM-HH:MM (e.g. 09:00-20:00)")
        start = time(int(m[1]), int(m[2]))
        end_minute = int(m[3]) * 60 + int(m[4])
        if end_minute > 1440 or end_minute <= start.hour * 60 + start.minute:
            raise CampaignError(f"calling window {text!r} must end after it starts, on the same day")
        return cls(start, end_minute)

    @property
    def start_minute(self) -> int:
        return self.start.hour * 60 + self.start.minute

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end_minute // 60:02d}:{self.end_minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a contact again, by the last attempt's outcome; every delay in seconds.

    Busy (486/600) soon; no answer (480/408/487 or our ring timeout) later; a machine per
    ``machine`` ("retry" after ``machine_delay_s``, or "done": the dialplan left a message);
    a refused number (404/484/603/410/604) never; other failures (5xx, network) after
    ``failed_delay_s``. ``max_attempts`` counts every attempt, interrupted ones included.
    """

    max_attempts: int = 3
    busy_delay_s: float = 300.0
    no_answer_delay_s: float = 1800.0
    machine: MachinePolicy = "retry"
    machine_delay_s: float = 3600.0
    failed_delay_s: float = 600.0
    # An attempt left 'dialing' by a crash: we cannot know whether the phone rang, so it is not
    # redialed in the window it was placed in ("next-window") or not at all ("never").
    interrupted: InterruptedPolicy = "next-window"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise CampaignError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("busy_delay_s", "no_answer_delay_s", "machine_delay_s", "failed_delay_s"):
            if getattr(self, name) < 0:
                raise CampaignError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.machine not in ("retry", "done"):
            raise CampaignError(f"machine policy must be 'retry' or 'done', got {self.machine!r}")
        if self.interrupted not in ("next-window", "never"):
            raise CampaignError("interrupted policy must be 'next-window' or 'never', "
                                f"got {self.interrupted!r}")


@dataclass(frozen=True, slots=True)
class Pacing:
    """Per trunk: at most ``max_concurrent`` calls at once and ``calls_per_s`` new calls per second
    (a token bucket holding at most ``burst`` tokens)."""

    max_concurrent: int = 4
    calls_per_s: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise CampaignError(f"max_concurrent must be at least 1, got {self.max_concurrent}")
        if self.calls_per_s <= 0:
            raise CampaignError(f"calls_per_s must be positive, got {self.calls_per_s}")
        if self.burst < 1:
            raise CampaignError(f"burst must be at least 1, got {self.burst}")


@dataclass(frozen=True, slots=True)
class Trunk:
    """Where calls go: ``proxy`` (a sip: URI; phone numbers are dialed as ``sip:NUMBER@<proxy
    host>`` through it), digest user (password from the environment variable ``password_env``),
    and the caller ID (the From user part)."""

    proxy: str | None = None
    username: str | None = None
    password_env: str = "VOICEBOT_TRUNK_PASSWORD"
    caller_id: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignSettings:
    dialplan: str
    trunk: Trunk = field(default_factory=Trunk)
    pacing: Pacing = field(default_factory=Pacing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    window: CallingWindow = field(default_factory=lambda: CallingWindow(time(9, 0), 20 * 60))
    default_tz: str = "UTC"
    ring_timeout_s: float = 30.0
    dnc_file: str | None = None  # one number per line; read again before every dial round
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    amd: bool = True  # detect answering machines on answered calls
    variables: dict[str, str] = field(default_factory=dict)  # for every contact (theirs win)

    def __post_init__(self) -> None:
        if not check_tz(self.default_tz):
            raise CampaignError(f"default time zone {self.default_tz!r} is not a known IANA zone "
                                "(e.g. Europe/Berlin)")
        if self.ring_timeout_s <= 0:
            raise CampaignError(f"ring_timeout_s must be positive, got {self.ring_timeout_s}")
        if self.trunk.proxy is not None and normalize_number(self.trunk.proxy) is None:
            raise CampaignError(f"trunk proxy {self.trunk.proxy!r} is not a sip: URI")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["window"] = str(self.window)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignSettings:
        return cls(
            dialplan=data["dialplan"], trunk=Trunk(**data["trunk"]), pacing=Pacing(**data["pacing"]),
            retry=RetryPolicy(**data["retry"]), window=CallingWindow.parse(data["window"]),
            default_tz=data["default_tz"], ring_timeout_s=data["ring_timeout_s"],
            dnc_file=data["dnc_file"], webhook_url=data["webhook_url"],
            webhook_timeout_s=data["webhook_timeout_s"], amd=data["amd"], variables=dict(data["variables"]),
        )

    def dial_uri(self, number: str) -> str:
        """The Request-URI for a contact: its own sip: URI, or the number at the trunk's host."""
        if number.startswith(("sip:", "sips:")):
            return number
        if self.trunk.proxy is None:
            raise CampaignError(f"contact {number} is a phone number but the campaign has no trunk proxy")
        proxy = parse_uri(self.trunk.proxy)
        assert isinstance(proxy, SipUri)
        port = f":{proxy.port}" if proxy.port else ""
        return f"sip:{number}@{proxy.host}{port}"


@dataclass(frozen=True, slots=True)
class Contact:
    """One row of the contacts CSV."""

    contact_id: str  # the normalized number: one contact per number in a campaign
    number: str
    tz: str | None
    variables: dict[str, str]
    line: int  # the CSV line it came from, for messages


__all__ = [
    "CallingWindow", "CampaignSettings", "Contact", "InterruptedPolicy", "MachinePolicy", "Pacing",
    "RetryPolicy", "Trunk", "check_tz", "normalize_number",
]
