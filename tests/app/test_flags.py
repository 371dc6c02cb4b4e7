"""``voicebot run``/``call`` flags become the one Config: flags over environment over the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from voicebot.appcli import _build_config
from voicebot.cli import build_parser
from voicebot.config import HostPort, PortRange
from voicebot.errors import ConfigError

pytestmark = pytest.mark.unit


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_defaults_are_the_readme_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VOICEBOT_SIP_LISTEN", "VOICEBOT_STT_MODE", "VOICEBOT_DIALOG_DIALPLAN",
                 "VOICEBOT_RECORDS_PATH"):
        monkeypatch.delenv(name, raising=False)
    config, variables = _build_config(parse("run"))
    assert config.sip.listen == HostPort("127.0.0.1", 5060)
    assert config.dialog.dialplan == Path("dialplans/demo.yaml")
    assert config.recognizer.mode == "embedded" and config.rtp.ports == PortRange(20000, 20999)
    assert variables == {}


def test_the_docker_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_SIP_LISTEN", raising=False)
    config, _ = _build_config(parse("run", "--sip-listen", "0.0.0.0:5060", "--rtp-ports", "20000-20999",
                                    "--records-db", "/var/lib/voicebot/calls.db"))
    assert config.sip.listen == HostPort("0.0.0.0", 5060)
    assert config.records.path == Path("/var/lib/voicebot/calls.db")


def test_flags_override_the_file_and_the_file_the_defaults(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_STT_API_KEY", "from-env")
    file = tmp_path / "voicebot.toml"
    file.write_text('[sip]\nlisten = "127.0.0.1:5080"\nmax_calls = 3\n[dialog]\n'
                    'transfer_target = "sip:desk@pbx"\n')
    config, variables = _build_config(parse(
        "run", "--config", str(file), "--transfer-target", "sip:night@pbx", "--stt-endpoint",
        "stt.api.cloud.yandex.net:443", "--stt-tls", "--var", "clinic=Dr. Who", "--var", "empty="))
    assert config.sip.listen == HostPort("127.0.0.1", 5080) and config.sip.max_calls == 3
    assert config.dialog.transfer_target == "sip:night@pbx"
    r = config.recognizer
    assert (r.mode, str(r.endpoint), r.tls, r.api_key) == ("endpoint", "stt.api.cloud.yandex.net:443",
                                                           True, "from-env")
    assert variables == {"clinic": "Dr. Who", "empty": ""}


def test_call_binds_any_free_port_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_SIP_LISTEN", raising=False)
    local = "sip:alice@127.0.0.1:5070"
    config, _ = _build_config(parse("call", local), outbound_to=local)
    assert config.sip.listen == HostPort("127.0.0.1", 0)
    config, _ = _build_config(parse("call", local, "--sip-listen", "127.0.0.1:5090"), outbound_to=local)
    assert config.sip.listen == HostPort("127.0.0.1", 5090)
    # A callee elsewhere cannot be reached from a loopback socket.
    remote = "sip:bob@192.0.2.7"
    config, _ = _build_config(parse("call", remote), outbound_to=remote)
    assert config.sip.listen == HostPort("0.0.0.0", 0)
    monkeypatch.setenv("VOICEBOT_SIP_LISTEN", "198.51.100.4:5060")  # the configured host is kept
    config, _ = _build_config(parse("call", remote), outbound_to=remote)
    assert config.sip.listen == HostPort("198.51.100.4", 0)


def test_call_with_a_malformed_uri_says_so() -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        _build_config(parse("call", "sip:"), outbound_to="sip:")


def test_a_tls_endpoint_without_a_key_says_where_the_key_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_STT_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="set VOICEBOT_STT_API_KEY"):
        _build_config(parse("run", "--stt-endpoint", "stt.api.cloud.yandex.net:443", "--stt-tls"))
