"""The SIP user agent's settings: one frozen dataclass, validated once when the core is built.

Every field carries its unit and default; the application layer (``voicebot/config.py``) translates
its own ``[sip]`` section into this. Admission limits (trunk networks, rate limit, per-source and
unconfirmed-call caps) are documented in docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebot.errors import ConfigError
from voicebot.sip.transaction import TimerConfig

# A proxy on the same host (Kamailio in front of the instances, issue 13) sends every call from the
# loopback address; the kernel drops packets that claim a loopback source on any other interface
# (martians), so exempting exactly these from the per-source call cap cannot be spoofed remotely.
LOCAL_PROXY_NETWORKS: tuple[str, ...] = ("127.0.0.1/32", "::1/128")


@dataclass(frozen=True, slots=True)
class UaConfig:
    """The user agent's settings (validated once, at construction of the user agent)."""

    local_host: str = "127.0.0.1"  # advertised in Via, Contact and the default SDP address
    local_port: int = 5060
    user: str = "voicebot"  # user part of our Contact / From
    display_name: str | None = None
    max_calls: int = 100  # concurrent calls; a new INVITE beyond this gets 503
    # Retry-After on that 503 (and on OPTIONS while draining); also the first wait before a failed
    # REGISTER is tried again (doubling for each failure in a row, up to registration.MAX_BACKOFF_S)
    retry_after_s: int = 30
    codecs: tuple[str, ...] = ("PCMU", "PCMA")  # our preference order when offering
    telephone_event_pt: int = 101
    ptime_ms: int = 20
    timers: TimerConfig = field(default_factory=TimerConfig)
    force_rport: bool = False  # answer to the packet's source port even without ;rport (NAT)
    allowed_networks: tuple[str, ...] = ()  # trunk CIDRs; empty: any source
    inbound_users: tuple[tuple[str, str], ...] = ()  # digest users for INVITEs from elsewhere
    auth_realm: str = "voicebot"
    # Every request (new, in-dialog, CANCEL) from a source outside allowed_networks spends a token;
    # transaction retransmissions and ACKs do not.
    rate_limit_per_s: float = 20.0  # requests per second per source IP
    rate_limit_burst: float = 40.0
    # Concurrent calls (inbound, any state) from one source IP; sources in allowed_networks and in
    # per_source_exempt are not counted (a trunk or a local proxy sends every call from one IP).
    # 0 disables the cap.
    max_calls_per_source: int = 8
    per_source_exempt: tuple[str, ...] = LOCAL_PROXY_NETWORKS
    # Of those, calls not yet confirmed (unanswered, or answered and not ACKed): a phone has one or
    # two ringing at a time; a squatter that never ACKs would otherwise fill the shared cap below.
    max_unconfirmed_per_source: int = 2
    # Inbound calls not yet confirmed (unanswered, or answered and waiting for the ACK), all sources
    # together; None: half of max_calls (at least 1). Keeps an ACK-less flood from holding every slot.
    max_unconfirmed_calls: int | None = None
    user_agent: str = "voicebot"
    answer_timeout_s: float = 120.0  # an inbound call neither answered nor rejected gets 480 after this
    outbound_timeout_s: float = 120.0  # our INVITE still unanswered after this is CANCELled
    load_header: str = "X-Voicebot-Load"  # "<active>/<max>" on every OPTIONS answer (docs/sip.md)

    @property
    def unconfirmed_cap(self) -> int:
        if self.max_unconfirmed_calls is not None:
            return self.max_unconfirmed_calls
        return max(1, self.max_calls // 2)

    def validate(self) -> None:
        """Raise ConfigError naming the field for a value the core cannot work with."""
        if self.max_calls < 1:
            raise ConfigError(f"sip.max_calls: must be at least 1, got {self.max_calls}")
        if self.max_calls_per_source < 0:
            raise ConfigError(
                f"sip.max_calls_per_source: must be 0 (off) or more, got {self.max_calls_per_source}"
            )
        if self.max_unconfirmed_per_source < 0:
            raise ConfigError(
                "sip.max_unconfirmed_per_source: must be 0 (off) or more, "
                f"got {self.max_unconfirmed_per_source}"
            )
        if self.max_unconfirmed_calls is not None and self.max_unconfirmed_calls < 1:
            raise ConfigError(
                f"sip.max_unconfirmed_calls: must be at least 1, got {self.max_unconfirmed_calls}"
            )
