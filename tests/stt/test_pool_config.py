"""The recognizer pool's configuration: flags, the [recognizer] section, ClientSettings and the
channel's target and service config (no sockets: names resolve through an injected function)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicebot.appcli import _build_config
from voicebot.cli import build_parser
from voicebot.config import HostPort, load_config
from voicebot.errors import ConfigError
from voicebot.stt.client import ClientSettings, RecognitionError, pool_target, service_config

pytestmark = pytest.mark.unit


def run_flags(*argv: str) -> ClientSettings:
    config, _ = _build_config(build_parser().parse_args(["run", *argv]))
    return ClientSettings.from_config(config.recognizer)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voicebot.toml"
    path.write_text(text)
    return path


def test_one_stt_endpoint_flag_is_one_recognizer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_STT_ENDPOINTS", raising=False)
    settings = run_flags("--stt-endpoint", "10.0.0.1:50051")
    assert (settings.target, settings.endpoints, settings.health_check) == ("10.0.0.1:50051", (), True)


@pytest.mark.parametrize("argv", [
    ("--stt-endpoint", "10.0.0.1:50051", "--stt-endpoint", "10.0.0.2:50051"),
    ("--stt-endpoint", "10.0.0.1:50051,10.0.0.2:50051"),
    ("--stt-endpoint", "10.0.0.1:50051, 10.0.0.2:50051,"),
])
def test_repeated_or_comma_separated_flags_make_a_pool(argv: tuple[str, ...]) -> None:
    settings = run_flags(*argv)
    assert settings.endpoints == ("10.0.0.1:50051", "10.0.0.2:50051")
    assert settings.target == "10.0.0.1:50051,10.0.0.2:50051"  # what error messages name


def test_the_flag_replaces_the_files_pool(tmp_path: Path) -> None:
    path = write(tmp_path, '[recognizer]\nmode = "endpoint"\nendpoints = ["10.0.0.1:1", "10.0.0.2:1"]\n')
    config, _ = _build_config(build_parser().parse_args(
        ["run", "--config", str(path), "--stt-endpoint", "10.0.0.9:50051"]))
    assert config.recognizer.pool == (HostPort("10.0.0.9", 50051),)
    config, _ = _build_config(build_parser().parse_args(["run", "--config", str(path)]))
    assert config.recognizer.pool == (HostPort("10.0.0.1", 1), HostPort("10.0.0.2", 1))


def test_endpoints_in_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[recognizer]\nmode = "endpoint"\nendpoints = ["stt-a:50051", "[::1]:50052"]\n')
    c = load_config(path, env={})
    assert c.recognizer.pool == (HostPort("stt-a", 50051), HostPort("::1", 50052))
    c = load_config(None, env={"VOICEBOT_STT_MODE": "endpoint", "VOICEBOT_STT_ENDPOINTS": "a:1,b:2"})
    assert ClientSettings.from_config(c.recognizer).endpoints == ("a:1", "b:2")


@pytest.mark.parametrize(("text", "message"), [
    ('endpoints = ["a:1", "b"]',
     r"\[recognizer\] endpoints has 'b': expected HOST:PORT, got 'b' \(no port\)"),
    ('endpoint = "a:1"\nendpoints = ["b:1", "c:1"]',
     r"\[recognizer\] endpoints and \[recognizer\] endpoint are both set; list every recognizer in "
     r"endpoints"),
    ('mode = "endpoint"\nendpoints = []',
     r"\[recognizer\] endpoint is required when .* \(or endpoints, for a pool\)"),
    ('endpoints = ["a:1", "b:1"]\ntls = true',
     r"\[recognizer\] endpoints with tls = true: a TLS pool must be one DNS name"),
])
def test_pool_config_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f"[recognizer]\n{text}\n"), env={"VOICEBOT_STT_API_KEY": "k"})


def test_health_checking_defaults_to_on_for_plaintext_and_off_for_tls(tmp_path: Path) -> None:
    env = {"VOICEBOT_STT_API_KEY": "k"}
    plain = load_config(write(tmp_path, '[recognizer]\nmode = "endpoint"\nendpoint = "a:1"\n'), env=env)
    tls = load_config(write(tmp_path, '[recognizer]\nmode = "endpoint"\nendpoint = "a:443"\ntls = true\n'),
                      env=env)
    forced = load_config(write(tmp_path, '[recognizer]\nmode = "endpoint"\nendpoint = "a:443"\ntls = true\n'
                                         'health_check = true\n'), env=env)
    assert ClientSettings.from_config(plain.recognizer).health_check is True
    assert ClientSettings.from_config(tls.recognizer).health_check is False
    assert ClientSettings.from_config(forced.recognizer).health_check is True


def test_service_config_is_round_robin_with_health_checking() -> None:
    on = json.loads(service_config(ClientSettings(target="a:1")))
    off = json.loads(service_config(ClientSettings(target="a:1", health_check=False)))
    assert on == {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
    assert off == {"loadBalancingConfig": [{"round_robin": {}}]}


def test_pool_target_lists_every_address_once() -> None:
    names = {"stt-a": ["10.0.0.1", "10.0.0.2"], "stt-b": ["10.0.0.2", "10.0.0.3"]}
    resolved: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append((host, port))
        return names[host]

    target = pool_target(["stt-a:50051", "stt-b:50051", "127.0.0.1:6000"], resolve=resolve)
    assert target == "ipv4:10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051,127.0.0.1:6000"
    assert resolved == [("stt-a", 50051), ("stt-b", 50051)]  # IP literals are not resolved
    assert pool_target(["[::1]:1", "[2001:db8::1]:2"]) == "ipv6:[::1]:1,[2001:db8::1]:2"


def test_pool_target_errors() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(RecognitionError,
                       match="recognizer pool endpoint nowhere:1: cannot resolve 'nowhere'"):
        pool_target(["nowhere:1", "127.0.0.1:2"], resolve=fails)
    with pytest.raises(RecognitionError, match=r"recognizer pool 127.0.0.1:1, \[::1\]:2 mixes IPv4 and IPv6"):
        pool_target(["127.0.0.1:1", "[::1]:2"])
