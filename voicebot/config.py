"""voicebot's one typed configuration, validated once at the edge.

Sources, later ones win: the defaults below, one TOML file (``--config FILE``), environment
variables ``VOICEBOT_<SECTION>_<FIELD>`` (e.g. ``VOICEBOT_SIP_LISTEN=0.0.0.0:5060``), and command
line flags (passed in as ``overrides``). Secrets (the recognizer API key, SIP passwords) come ONLY
from the environment: a secret in the file is an error, so config files can be committed and shared.

Every field carries its documentation, unit and default in its metadata; :func:`reference_table`
renders them for docs/voicebot.example.toml and the README. Errors name the field and the source
(file, variable or flag) and say what is expected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voicebot.ascii import is_digits
from voicebot.errors import ConfigError, VoicebotError
from voicebot.net import is_loopback

# --- value types ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int
    high: int  # inclusive

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def parse_host_port(text: str, *, default_port: int | None = None) -> HostPort:
    """``host:port``, ``[v6]:port``, or ``host`` when a default port is given."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        raise ValueError(f"expected HOST:PORT, got {text!r} (no host)")
    if not port_text:
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, got {text!r} (no port)")
        return HostPort(host, default_port)
    if not is_digits(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1..65535, got {port_text!r} in {text!r}")
    return HostPort(host, int(port_text))


def parse_port_range(text: str) -> PortRange:
    """``LOW-HIGH``: an inclusive range of UDP ports."""
    low_text, sep, high_text = text.strip().partition("-")
    if not sep or not all(is_digits(t) for t in (low_text, high_text)):
        raise ValueError(f"expected LOW-HIGH, got {text!r}")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"need 1024 <= LOW <= HIGH <= 65535, got {text!r}")
    return PortRange(low, high)


def _doc(text: str, unit: str = "", *, secret_env: str | None = None) -> dict[str, str]:
    meta = {"doc": text, "unit": unit}
    if secret_env:
        meta["secret_env"] = secret_env
    return meta


# --- sections ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SipConfig:
    listen: HostPort = field(default=HostPort("127.0.0.1", 5060), metadata=_doc(
        "UDP address the SIP user agent listens on", "HOST:PORT"))
    public_address: HostPort | None = field(default=None, metadata=_doc(
        "address advertised in Via/Contact/SDP when behind NAT; unset = the listen address", "HOST:PORT"))
    trunk_allow: tuple[str, ...] = field(default=(), metadata=_doc(
        "source networks allowed to send INVITEs without auth; empty = any source", "CIDR list"))
    inbound_auth_user: str | None = field(default=None, metadata=_doc(
        "digest user inbound INVITEs must authenticate as (password from VOICEBOT_SIP_INBOUND_PASSWORD);"
        " unset = no inbound auth"))
    inbound_password: str | None = field(default=None, repr=False, metadata=_doc(
        "inbound digest password", secret_env="VOICEBOT_SIP_INBOUND_PASSWORD"))
    registrar: str | None = field(default=None, metadata=_doc(
        "registrar to REGISTER with (a SIP URI); unset = no registration", "SIP URI"))
    register_user: str | None = field(default=None, metadata=_doc("user for REGISTER and its digest auth"))
    register_password: str | None = field(default=None, repr=False, metadata=_doc(
        "registration password", secret_env="VOICEBOT_SIP_REGISTER_PASSWORD"))
    register_expires_s: int = field(default=3600, metadata=_doc("requested registration lifetime", "s"))
    max_calls: int = field(default=16, metadata=_doc(
        "concurrent calls; one more gets 503 with Retry-After", "calls"))
    max_calls_per_source: int = field(default=8, metadata=_doc(
        "concurrent calls from one source address (trunk_allow and loopback exempt; 0 = no limit)",
        "calls"))
    max_unconfirmed_per_source: int = field(default=2, metadata=_doc(
        "answered but not yet ACKed calls from one source address (0 = no limit)", "calls"))


@dataclass(frozen=True, slots=True)
class RtpConfig:
    host: str = field(default="127.0.0.1", metadata=_doc("address RTP sockets bind to", "IP"))
    ports: PortRange = field(default=PortRange(20000, 20999), metadata=_doc(
        "UDP port range for RTP (one even port per call)", "LOW-HIGH"))


@dataclass(frozen=True, slots=True)
class RecognizerConfig:
    mode: Literal["embedded", "endpoint"] = field(default="embedded", metadata=_doc(
        "embedded: start voicebot's own recognition server; endpoint: use `endpoint` (e.g. the cloud)"))
    endpoint: HostPort | None = field(default=None, metadata=_doc(
        "SpeechKit STT v3 server, e.g. stt.api.cloud.yandex.net:443 (required when mode = endpoint)",
        "HOST:PORT"))
    endpoints: tuple[str, ...] = field(default=(), metadata=_doc(
        "a recognizer pool instead of one `endpoint`: new sessions are spread round-robin over the"
        " healthy ones, and a stream whose recognizer dies resumes on another (plaintext only; a TLS"
        " pool goes behind one DNS name given as `endpoint`)", "HOST:PORT list"))
    health_check: bool | None = field(default=None, metadata=_doc(
        "gRPC client health checking (grpc.health.v1, service \"\"): a recognizer reporting NOT_SERVING"
        " takes no new sessions; unset = on without TLS (voicebot stt-server), off with TLS (a server"
        " whose health service may need credentials)"))
    tls: bool = field(default=False, metadata=_doc("use TLS to the endpoint (true for the cloud)"))
    ca_file: Path | None = field(default=None, metadata=_doc(
        "PEM CA bundle to verify the endpoint; unset = system root CAs", "path"))
    api_key: str | None = field(default=None, repr=False, metadata=_doc(
        "recognizer API key (sent as `authorization: Api-Key ...`); embedded mode generates one",
        secret_env="VOICEBOT_STT_API_KEY"))
    language: str = field(default="en-US", metadata=_doc("language whitelist sent to the recognizer",
                                                         "BCP-47"))
    model: str = field(default="general", metadata=_doc("recognition model tag"))
    session_max_audio_s: float = field(default=300.0, metadata=_doc(
        "recognizer's audio limit per session (SpeechKit: 5 min)", "s"))
    session_max_bytes: int = field(default=10_000_000, metadata=_doc(
        "recognizer's data limit per session (SpeechKit: 10 MB)", "bytes"))
    rotate_at_pause_margin_s: float = field(default=30.0, metadata=_doc(
        "within this much of a limit, rotate the session at the next pause between utterances", "s"))
    rotate_force_margin_s: float = field(default=10.0, metadata=_doc(
        "within this much of a limit, rotate now (replaying audio since the last final)", "s"))
    replay_buffer_s: float = field(default=30.0, metadata=_doc(
        "call audio kept since the last final, resent after a reconnect or forced rotation", "s"))
    chunk_max_ms: int = field(default=100, metadata=_doc("largest audio chunk sent in one message", "ms"))
    hints: bool = field(default=True, metadata=_doc(
        "tell the recognizer what each dialog state expects (x-voicebot-hints-bin metadata, a new "
        "session per listening state; servers other than voicebot's ignore it)"))
    silence_fill_after_ms: int = field(default=300, metadata=_doc(
        "with no audio for this long, send silence_chunk so the recognizer's 5 s idle rule never fires",
        "ms"))
    reconnect_initial_s: float = field(default=0.2, metadata=_doc("first reconnect delay", "s"))
    reconnect_max_s: float = field(default=5.0, metadata=_doc("longest reconnect delay", "s"))
    reconnect_give_up_s: float = field(default=60.0, metadata=_doc(
        "stop reconnecting after the recognizer has been unreachable this long", "s"))

    @property
    def pool(self) -> tuple[HostPort, ...]:
        """The recognizers to use: ``endpoints`` when given, else ``endpoint`` (validated at load)."""
        if self.endpoints:
            return tuple(parse_host_port(text) for text in self.endpoints)
        return () if self.endpoint is None else (self.endpoint,)


@dataclass(frozen=True, slots=True)
class DialogConfig:
    dialplan: Path = field(default=Path("dialplans/demo.yaml"), metadata=_doc(
        "dialplan every call runs", "path"))
    transfer_target: str | None = field(default=None, metadata=_doc(
        "SIP URI the dialplan's transfer action sends callers to", "SIP URI"))
    meaning: bool = field(default=True, metadata=_doc(
        "when no phrase matches, ask \"Did you say ...?\" about the intent closest in meaning to what the "
        "caller said (sentence embeddings, all-MiniLM-L6-v2 from the wheel scripts/setup installs; "
        "without it, a warning and phrases only)"))


@dataclass(frozen=True, slots=True)
class RecordsConfig:
    path: Path = field(default=Path("var/calls.db"), metadata=_doc("SQLite call-record database", "path"))
    url: str = field(default="", metadata=_doc(
        "PostgreSQL URL (postgresql://user@host:5432/db) shared by several instances; overrides path. "
        "The password comes from PGPASSWORD or ~/.pgpass, never from this file"))

    @property
    def target(self) -> Path | str:
        """Where the records live: the PostgreSQL URL when set, else the SQLite path."""
        return self.url or self.path


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    enabled: bool = field(default=False, metadata=_doc(
        "record every call's audio (a dialplan or the pipeline's flag may turn it on per call)"))
    dir: Path = field(default=Path("var/recordings"), metadata=_doc(
        "directory of the call recordings (one WAV per call, or two with mono-pair)", "path"))
    format: Literal["stereo", "mono-pair"] = field(default="stereo", metadata=_doc(
        "stereo: one 8 kHz 16-bit WAV, caller left and robot right; mono-pair: <id>.caller.wav and"
        " <id>.robot.wav"))
    retention_days: float = field(default=0.0, metadata=_doc(
        "delete recordings older than this (at start and daily); 0 = keep forever", "days"))


@dataclass(frozen=True, slots=True)
class TtsConfig:
    voice: str = field(default="piper:en_US-joe-medium", metadata=_doc(
        "default prompt voice: piper:en_US-joe-medium (natural, offline), espeak:<voice> (any "
        "espeak-ng language), or speechkit:<voice> (needs speechkit_endpoint)", "ENGINE:VOICE"))
    cache_dir: Path = field(default=Path("var/tts-cache"), metadata=_doc(
        "synthesized prompt cache, keyed by engine, voice, text and parameters", "path"))
    speechkit_endpoint: str = field(default="", metadata=_doc(
        "SpeechKit TTS v3 server for speechkit: voices, e.g. tts.api.cloud.yandex.net:443 (key from "
        "VOICEBOT_TTS_API_KEY, else the recognizer's); unset = speechkit: voices fall back to espeak-ng",
        "HOST:PORT"))
    speechkit_tls: bool = field(default=True, metadata=_doc("use TLS to the SpeechKit TTS endpoint"))
    speechkit_timeout_s: float = field(default=10.0, metadata=_doc(
        "deadline of one SpeechKit synthesis; past it the prompt is said by the local voice", "s"))


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: HostPort | None = field(default=None, metadata=_doc(
        "address of the operations HTTP endpoint (/metrics, /healthz, /readyz) and the control API"
        " (/v1, see docs/api.md); unset = off", "HOST:PORT"))
    api_token: str | None = field(default=None, repr=False, metadata=_doc(
        "bearer token every /v1 request must carry (at least 16 characters); unset = the control API is"
        " off", secret_env="VOICEBOT_API_TOKEN"))
    api_no_auth: bool = field(default=False, metadata=_doc(
        "serve /v1 without a token (development only; refused unless listen is a loopback address)"))
    dialplans: tuple[str, ...] = field(default=(), metadata=_doc(
        "more dialplans POST /v1/calls may run, besides [dialog] dialplan (loaded and their prompts"
        " rendered at start)", "path list"))
    trunk: str | None = field(default=None, metadata=_doc(
        "SIP URI of the trunk a phone number given to POST /v1/calls is dialed through"
        " (sip:NUMBER@trunk-host); unset = only sip: URIs", "SIP URI"))
    campaigns_db: Path | None = field(default=None, metadata=_doc(
        "SQLite file of the campaigns /v1/campaigns creates and runs inside voicebot run (the same file"
        " voicebot campaign --campaign-db uses); unset = the campaign routes are off", "path"))
    events_replay: int = field(default=1000, metadata=_doc(
        "call events kept for /v1/events clients that reconnect with Last-Event-ID (replayed to them);"
        " 0 = none", "events"))
    events_replay_s: float = field(default=600.0, metadata=_doc(
        "and none kept longer than this before the newest event", "s"))


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_doc("log level"))
    format: Literal["auto", "json", "console"] = field(default="auto", metadata=_doc(
        "auto = JSON unless stderr is a terminal"))
    redact_pii: bool = field(default=False, metadata=_doc("replace pii.* log values with [redacted]"))


@dataclass(frozen=True, slots=True)
class Config:
    sip: SipConfig = field(default_factory=SipConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    dialog: DialogConfig = field(default_factory=DialogConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    log: LogConfig = field(default_factory=LogConfig)


_SECTIONS: dict[str, type[Any]] = dict(typing.get_type_hints(Config))
# The recognizer's env prefix is STT (VOICEBOT_STT_API_KEY is the name people know).
_ENV_PREFIX = {"recognizer": "VOICEBOT_STT_"}


def env_name(section: str, key: str) -> str:
    prefix = _ENV_PREFIX.get(section, f"VOICEBOT_{section.upper()}_")
    return prefix + key.upper()


# --- coercion ------------------------------------------------------------------------------------


def _coerce(value: object, tp: Any, *, from_text: bool) -> object:
    """Turn a TOML value (or, with ``from_text``, an env/flag string) into ``tp``; ValueError if not."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if from_text and isinstance(value, str) and value.strip() == "":
            return None
        return _coerce(value, args[0], from_text=from_text)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is tuple:
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"must be a list of strings, got {value!r}")
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a list of strings, got {value!r}")
        return tuple(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0",
                                                                       "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError(f"must be true or false, got {value!r}")
    if tp is int:
        if from_text and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    if tp is str:
        return value
    if tp is Path:
        return Path(value).expanduser()
    if tp is HostPort:
        return parse_host_port(value)
    if tp is PortRange:
        return parse_port_range(value)
    raise TypeError(f"config field type {tp!r} has no coercion")  # a bug in this module


# --- loading -------------------------------------------------------------------------------------


def load_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, str] | None = None) -> Config:
    """Build the :class:`Config` from ``path`` (TOML), ``env`` and ``overrides``, then validate it.

    ``overrides`` maps ``"section.field"`` to the text a command-line flag gave (``--sip-listen``
    becomes ``{"sip.listen": "0.0.0.0:5060"}``). Raises :class:`ConfigError` naming field and source.
    """
    env = os.environ if env is None else env
    raw: dict[str, dict[str, tuple[object, str, bool]]] = {name: {} for name in _SECTIONS}
    if path is not None:
        _read_file(Path(path), raw)
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            secret_env = f.metadata.get("secret_env")
            name = secret_env or env_name(section, f.name)
            if name in env:
                raw[section][f.name] = (env[name], f"environment variable {name}", True)
    for dotted, text in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in _SECTIONS or key not in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
            raise ConfigError(f"unknown config field {dotted!r} in command-line overrides")
        raw[section][key] = (text, f"command-line option for {dotted}", True)

    sections: dict[str, object] = {}
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for key, (value, source, from_text) in raw[section].items():
            try:
                values[key] = _coerce(value, hints[key], from_text=from_text)
            except ValueError as exc:
                raise ConfigError(f"{source}: [{section}] {key} {exc}") from None
        sections[section] = cls(**values)
    config = Config(**sections)  # type: ignore[arg-type]
    _validate(config, source=str(path) if path is not None else "configuration")
    return config


def _read_file(path: Path, raw: dict[str, dict[str, tuple[object, str, bool]]]) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(_SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}])")
        fields = {f.name: f for f in dataclasses.fields(_SECTIONS[section])}
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(f"{path}: [{section}] unknown key {key!r}; known: {', '.join(fields)}")
            secret_env = fields[key].metadata.get("secret_env")
            if secret_env:
                raise ConfigError(f"{path}: [{section}] {key} is a secret; set it only in the environment "
                                  f"variable {secret_env}, never in the config file")
            raw[section][key] = (value, str(path), False)


def _validate(c: Config, *, source: str) -> None:
    def fail(field_name: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {field_name} {message}")

    for cidr in c.sip.trunk_allow:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            fail("[sip] trunk_allow", f"has {cidr!r}, which is not an IP network (e.g. 192.0.2.0/24)")
    if c.records.url and not c.records.url.startswith(("postgresql://", "postgres://")):
        fail("[records] url", f"must be a postgresql:// URL (got scheme {c.records.url.split(':', 1)[0]!r})")
    if c.records.url and ":" in c.records.url.split("://", 1)[1].split("@", 1)[0] and "@" in c.records.url:
        fail("[records] url", "must not carry a password; set PGPASSWORD or use ~/.pgpass")
    try:
        from voicebot.tts.voices import parse_voice_spec

        parse_voice_spec(c.tts.voice)
    except VoicebotError as exc:
        fail("[tts] voice", f"is not a voice: {exc}")
    if c.sip.max_calls_per_source < 0 or c.sip.max_unconfirmed_per_source < 0:
        fail("[sip] max_calls_per_source", "and max_unconfirmed_per_source must be 0 (off) or more")
    if c.sip.max_calls < 1:
        fail("[sip] max_calls", f"must be at least 1, got {c.sip.max_calls}")
    if c.sip.register_expires_s < 60:
        fail("[sip] register_expires_s", f"must be at least 60 s, got {c.sip.register_expires_s}")
    if c.sip.registrar and not c.sip.register_user:
        fail("[sip] register_user", "is required when [sip] registrar is set")
    if c.sip.registrar and not c.sip.register_password:
        fail("[sip] register_password", "is required when [sip] registrar is set; set "
             "VOICEBOT_SIP_REGISTER_PASSWORD in the environment")
    if c.sip.inbound_auth_user and not c.sip.inbound_password:
        fail("[sip] inbound_password", "is required when [sip] inbound_auth_user is set; set "
             "VOICEBOT_SIP_INBOUND_PASSWORD in the environment")
    try:
        ipaddress.ip_address(c.rtp.host)
    except ValueError:
        fail("[rtp] host", f"must be an IP address, got {c.rtp.host!r}")
    if c.rtp.ports.high - c.rtp.ports.low < 1:
        fail("[rtp] ports", f"needs at least two ports (RTP uses even ports), got {c.rtp.ports}")

    r = c.recognizer
    for text in r.endpoints:
        try:
            parse_host_port(text)
        except ValueError as exc:
            fail("[recognizer] endpoints", f"has {text!r}: {exc}")
    if r.endpoint is not None and r.endpoints:
        fail("[recognizer] endpoints",
             "and [recognizer] endpoint are both set; list every recognizer in endpoints")
    if r.mode == "endpoint" and not r.pool:
        fail("[recognizer] endpoint",
             "is required when [recognizer] mode = \"endpoint\" (or endpoints, for a pool)")
    if r.tls and len(r.endpoints) > 1:
        fail("[recognizer] endpoints", "with tls = true: a TLS pool must be one DNS name with several "
             "addresses, given as [recognizer] endpoint (the certificate names one host)")
    if r.ca_file is not None and not r.tls:
        fail("[recognizer] ca_file", "is set but [recognizer] tls is false")
    if r.ca_file is not None and not r.ca_file.is_file():
        fail("[recognizer] ca_file", f"{r.ca_file} does not exist")
    if r.mode == "endpoint" and r.tls and not r.api_key:
        fail("[recognizer] api_key", "is required for a TLS endpoint; set VOICEBOT_STT_API_KEY")
    if not r.language:
        fail("[recognizer] language", "must not be empty (e.g. en-US, ru-RU or auto)")
    if r.session_max_audio_s <= 0 or r.session_max_bytes <= 0:
        fail("[recognizer] session_max_audio_s", "and session_max_bytes must be positive")
    if not 0 < r.rotate_force_margin_s < r.rotate_at_pause_margin_s < r.session_max_audio_s:
        fail("[recognizer] rotate_force_margin_s",
             f"must satisfy 0 < rotate_force_margin_s ({r.rotate_force_margin_s}) < rotate_at_pause_margin_s"
             f" ({r.rotate_at_pause_margin_s}) < session_max_audio_s ({r.session_max_audio_s})")
    if not 0 < r.replay_buffer_s < r.session_max_audio_s - r.rotate_at_pause_margin_s:
        fail("[recognizer] replay_buffer_s",
             f"must be > 0 and leave room in a new session: less than session_max_audio_s - "
             f"rotate_at_pause_margin_s = {r.session_max_audio_s - r.rotate_at_pause_margin_s} s, "
             f"got {r.replay_buffer_s}")
    if not 10 <= r.chunk_max_ms <= 1000:
        fail("[recognizer] chunk_max_ms", f"must be 10..1000 ms, got {r.chunk_max_ms}")
    if not 20 <= r.silence_fill_after_ms <= 4000:
        fail("[recognizer] silence_fill_after_ms",
             "must be 20..4000 ms (the recognizer ends a session after 5 s idle), "
             f"got {r.silence_fill_after_ms}")
    if not 0 < r.reconnect_initial_s <= r.reconnect_max_s:
        fail("[recognizer] reconnect_initial_s", "must be positive and at most reconnect_max_s")
    if r.reconnect_give_up_s <= 0:
        fail("[recognizer] reconnect_give_up_s", f"must be positive, got {r.reconnect_give_up_s}")
    if c.recording.retention_days < 0:
        fail("[recording] retention_days",
             f"must be 0 (keep forever) or positive, got {c.recording.retention_days}")
    _validate_http(c, fail)
    if c.dialog.transfer_target is not None and not c.dialog.transfer_target.startswith(("sip:", "sips:")):
        fail("[dialog] transfer_target", f"must be a sip: or sips: URI, got {c.dialog.transfer_target!r}")


API_TOKEN_MIN_CHARS = 16


def _validate_http(c: Config, fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    """The control API is authenticated unless explicitly not, and then only on loopback."""
    h = c.http
    if h.api_token is not None and len(h.api_token) < API_TOKEN_MIN_CHARS:
        fail("[http] api_token", f"(VOICEBOT_API_TOKEN) must be at least {API_TOKEN_MIN_CHARS} characters, "
             f"got {len(h.api_token)}; e.g. `openssl rand -hex 32`")
    if h.api_no_auth and h.api_token is not None:
        fail("[http] api_no_auth", "is set but so is VOICEBOT_API_TOKEN; choose one")
    if h.api_no_auth and (h.listen is None or not is_loopback(h.listen.host)):
        fail("[http] api_no_auth", f"refuses to serve the control API without a token on "
             f"{h.listen or 'no address'}: only a loopback listen address (127.0.0.1, ::1) may go without "
             "one; set VOICEBOT_API_TOKEN")
    if not 0 <= h.events_replay <= 100_000:
        fail("[http] events_replay", f"must be 0..100000 events, got {h.events_replay}")
    if h.events_replay_s <= 0:
        fail("[http] events_replay_s", f"must be positive, got {h.events_replay_s}")
    if h.trunk is not None and not h.trunk.startswith(("sip:", "sips:")):
        fail("[http] trunk", f"must be a sip: or sips: URI, got {h.trunk!r}")
    if h.trunk is not None:
        from voicebot.sip.uri import SipUri, parse_uri

        try:
            trunk = parse_uri(h.trunk)
        except VoicebotError as exc:
            fail("[http] trunk", f"is not a SIP URI ({h.trunk!r}): {exc.message}")
        if not isinstance(trunk, SipUri) or not trunk.host:
            fail("[http] trunk", f"must be a sip: or sips: URI with a host, got {h.trunk!r}")


def reference_table() -> list[tuple[str, str, str, str, str]]:
    """(``[section] key``, env variable, unit, default, doc) for every field, for the docs."""
    rows = []
    for section, cls in _SECTIONS.items():
        defaults = cls()
        for f in dataclasses.fields(cls):
            secret_env = f.metadata.get("secret_env")
            env = secret_env or env_name(section, f.name)
            default = getattr(defaults, f.name)
            shown = "(env only)" if secret_env else ("unset" if default is None else str(default))
            if isinstance(default, tuple):
                shown = "[" + ", ".join(default) + "]"
            rows.append((f"[{section}] {f.name}", env, f.metadata.get("unit", ""), shown, f.metadata["doc"]))
    return rows
