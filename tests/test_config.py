"""Configuration: file + environment + flags, validated once, errors that name the field and source."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from voicebot.config import (
    Config,
    HostPort,
    PortRange,
    load_config,
    parse_host_port,
    parse_port_range,
    reference_table,
)
from voicebot.errors import ConfigError

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "voicebot.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voicebot.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env() -> None:
    c = load_config(env={})
    assert c == Config()
    assert c.sip.listen == HostPort("127.0.0.1", 5060)
    assert c.recognizer.mode == "embedded" and c.recognizer.session_max_audio_s == 300.0
    assert c.recognizer.session_max_bytes == 10_000_000


def test_example_file_loads_and_matches_defaults() -> None:
    # Every key in the example is commented out (it documents defaults), so loading it gives defaults.
    assert load_config(EXAMPLE, env={}) == Config()
    text = EXAMPLE.read_text()
    for key, env, _unit, _default, _doc in reference_table():
        assert env in text, f"{key} is not documented in the example"


def test_example_file_uncommented_is_valid_toml_for_every_non_secret_field(tmp_path: Path) -> None:
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith("["):
            lines.append(line)
        elif line.startswith("# "):  # a key shown commented out; "##" lines are documentation
            lines.append(line.removeprefix("# "))
    data = tomllib.loads("\n".join(lines))
    ca = tmp_path / "ca.pem"  # the example's CA path may not exist on every machine
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert data["sip"]["listen"] == "127.0.0.1:5060"
    c = load_config(write(tmp_path, "\n".join(lines)), env={
        "VOICEBOT_SIP_REGISTER_PASSWORD": "pw", "VOICEBOT_SIP_INBOUND_PASSWORD": "pw2",
        "VOICEBOT_STT_API_KEY": "k", "VOICEBOT_STT_TLS": "true", "VOICEBOT_STT_CA_FILE": str(ca)})
    assert c.sip.registrar == "sip:pbx.example.com"
    assert c.sip.trunk_allow == ("192.0.2.0/24", "2001:db8::/32")
    assert c.recognizer.endpoint == HostPort("stt.api.cloud.yandex.net", 443)
    assert c.recognizer.ca_file == ca


def test_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, """
[sip]
listen = "0.0.0.0:5070"
trunk_allow = ["10.0.0.0/8"]
max_calls = 4
[rtp]
ports = "30000-30100"
[recognizer]
mode = "endpoint"
endpoint = "stt.api.cloud.yandex.net:443"
tls = true
language = "ru-RU"
session_max_audio_s = 20
rotate_at_pause_margin_s = 8
rotate_force_margin_s = 3
replay_buffer_s = 10
[dialog]
transfer_target = "sip:agent@pbx"
""")
    c = load_config(path, env={"VOICEBOT_STT_API_KEY": "secret-key"})
    assert c.sip.listen == HostPort("0.0.0.0", 5070)
    assert c.sip.trunk_allow == ("10.0.0.0/8",)
    assert c.rtp.ports == PortRange(30000, 30100)
    assert c.recognizer.endpoint == HostPort("stt.api.cloud.yandex.net", 443)
    assert c.recognizer.tls is True and c.recognizer.api_key == "secret-key"
    assert c.recognizer.session_max_audio_s == 20.0 and isinstance(c.recognizer.session_max_audio_s, float)
    assert c.dialog.transfer_target == "sip:agent@pbx"
    assert "secret-key" not in repr(c)


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\nlisten = "127.0.0.1:5060"\nmax_calls = 2\n')
    c = load_config(path, env={"VOICEBOT_SIP_LISTEN": "127.0.0.1:5080", "VOICEBOT_SIP_MAX_CALLS": "8",
                               "VOICEBOT_LOG_REDACT_PII": "yes"},
                    overrides={"sip.listen": "127.0.0.1:5090"})
    assert c.sip.listen.port == 5090
    assert c.sip.max_calls == 8
    assert c.log.redact_pii is True


def test_environment_list_and_empty_optional() -> None:
    c = load_config(env={"VOICEBOT_SIP_TRUNK_ALLOW": "10.0.0.0/8, 192.0.2.1",
                         "VOICEBOT_SIP_PUBLIC_ADDRESS": ""})
    assert c.sip.trunk_allow == ("10.0.0.0/8", "192.0.2.1")
    assert c.sip.public_address is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[sip]\nmax_calls = "many"\n', r"voicebot.toml: \[sip\] max_calls must be an integer, got 'many'"),
        ('[sip]\nlisten = "localhost"\n', r"\[sip\] listen expected HOST:PORT, got 'localhost' \(no port\)"),
        ('[sip]\nlisten = "h:99999"\n', r"\[sip\] listen port must be 1..65535"),
        # str.isdigit takes '²' and int() refuses it: the config error, not int()'s own message
        ('[sip]\nlisten = "h:50²"\n', r"voicebot.toml: \[sip\] listen port must be 1..65535, got '50²'"),
        ('[rtp]\nports = "20000-3000²"\n', r"voicebot.toml: \[rtp\] ports expected LOW-HIGH, "
                                           r"got '20000-3000²'"),
        ('[sip]\nlisten_port = 5060\n', r"voicebot.toml: \[sip\] unknown key 'listen_port'; known: listen"),
        ("[sipp]\n", r"unknown section \[sipp\]"),
        ('[sip]\ntrunk_allow = ["10.0.0.300/8"]\n', r"\[sip\] trunk_allow has '10.0.0.300/8'"),
        ('[rtp]\nports = "30000-20000"\n', r"\[rtp\] ports need 1024 <= LOW <= HIGH"),
        ('[recognizer]\nmode = "cloud"\n', r"\[recognizer\] mode must be one of 'embedded', 'endpoint'"),
        ('[recognizer]\nmode = "endpoint"\n', r"\[recognizer\] endpoint is required when"),
        ('[recognizer]\ntls = "yes"\n', r"\[recognizer\] tls must be true or false"),
        ('[recognizer]\napi_key = "k"\n', r"api_key is a secret; set it only in the environment variable "
                                          r"VOICEBOT_STT_API_KEY"),
        ('[recognizer]\nrotate_force_margin_s = 40\n', r"rotate_force_margin_s must satisfy"),
        ('[recognizer]\nreplay_buffer_s = 290\n', r"replay_buffer_s must be > 0 and leave room"),
        # Equal to max - pause margin: a fresh session would be due for rotation at once (a storm).
        ('[recognizer]\nsession_max_audio_s = 20\nrotate_at_pause_margin_s = 8\nrotate_force_margin_s = 3\n'
         'replay_buffer_s = 12\n', r"replay_buffer_s must be > 0 and leave room .* less than"),
        ('[recognizer]\nsilence_fill_after_ms = 6000\n', r"silence_fill_after_ms must be 20..4000"),
        ('[recognizer]\nca_file = "/x.pem"\n', r"ca_file is set but \[recognizer\] tls is false"),
        ('[sip]\nregistrar = "sip:pbx"\nregister_user = "u"\n', r"register_password is required .* "
                                                                 r"VOICEBOT_SIP_REGISTER_PASSWORD"),
        ('[dialog]\ntransfer_target = "agent@pbx"\n', r"transfer_target must be a sip: or sips: URI"),
        ("[sip\n", r"voicebot.toml: not valid TOML: .*line 1"),
        ('sip = 1\n', r"sip must be a table"),
    ],
)
def test_file_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env={})


def test_env_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"environment variable VOICEBOT_STT_SESSION_MAX_AUDIO_S: "
                                          r"\[recognizer\] session_max_audio_s must be a number, got 'five'"):
        load_config(env={"VOICEBOT_STT_SESSION_MAX_AUDIO_S": "five"})


def test_flag_error_names_the_flag() -> None:
    with pytest.raises(ConfigError,
                       match=r"command-line option for rtp.ports: \[rtp\] ports expected LOW-HIGH"):
        load_config(env={}, overrides={"rtp.ports": "20000"})
    with pytest.raises(ConfigError, match=r"unknown config field 'rtp\.portz'"):
        load_config(env={}, overrides={"rtp.portz": "1-2"})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config file /nonexistent/v\.toml does not exist"):
        load_config("/nonexistent/v.toml", env={})


def test_tls_endpoint_needs_key_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[recognizer]\nmode = "endpoint"\nendpoint = "stt.example:443"\ntls = true\n')
    with pytest.raises(ConfigError, match="api_key is required for a TLS endpoint; set VOICEBOT_STT_API_KEY"):
        load_config(path, env={})
    assert load_config(path, env={"VOICEBOT_STT_API_KEY": "k"}).recognizer.api_key == "k"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:5060", HostPort("127.0.0.1", 5060)), ("[::1]:50051", HostPort("::1", 50051)),
     ("example.com:443", HostPort("example.com", 443))],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected
    assert parse_host_port(str(expected)) == expected


def test_parse_host_port_default_and_errors() -> None:
    assert parse_host_port("pbx", default_port=5060) == HostPort("pbx", 5060)
    for bad in (":5060", "host:port", "[::1", "[::1]x", "host:²", "host:50²", "host:٥٠٦٠", "[::1]:¹"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


def test_parse_port_range() -> None:
    assert parse_port_range("20000-20010") == PortRange(20000, 20010)
    for bad in ("20000", "a-b", "80-90", "30000-70000", "20000-2000²", "²0000-30000", "٢٠٠٠٠-٣٠٠٠٠"):
        with pytest.raises(ValueError):
            parse_port_range(bad)


def test_every_field_is_documented_with_a_doc() -> None:
    rows = reference_table()
    assert len(rows) > 30
    assert all(doc for *_, doc in rows)
    secrets = {env for _k, env, _u, default, _d in rows if default == "(env only)"}
    assert secrets == {"VOICEBOT_STT_API_KEY", "VOICEBOT_SIP_REGISTER_PASSWORD",
                       "VOICEBOT_SIP_INBOUND_PASSWORD", "VOICEBOT_API_TOKEN"}


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://db/calls", "[records] url must be a postgresql:// URL (got scheme 'mysql')"),
    ("postgresql://bot:secret@db/calls", "[records] url must not carry a password"),
])
def test_records_url_is_checked(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[records]\nurl = "{url}"\n'), env={})
    assert message in str(info.value)


def test_records_target_prefers_the_url(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, '[records]\nurl = "postgresql://bot@db:5432/calls"\n'), env={})
    assert c.records.target == "postgresql://bot@db:5432/calls"
    assert load_config(None, env={}).records.target == Path("var/calls.db")
