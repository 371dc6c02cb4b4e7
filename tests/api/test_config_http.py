"""[http]: the control API's token only from the environment, never short; no auth only on loopback;
the trunk a SIP URI; extra dialplans as a list."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.config import HostPort, load_config
from voicebot.errors import ConfigError

pytestmark = pytest.mark.unit

TOKEN = "0123456789abcdef"


def test_the_token_comes_from_the_environment_and_is_not_shown() -> None:
    c = load_config(env={"VOICEBOT_API_TOKEN": TOKEN, "VOICEBOT_HTTP_LISTEN": "0.0.0.0:9090"})
    assert c.http.api_token == TOKEN and c.http.listen == HostPort("0.0.0.0", 9090)
    assert TOKEN not in repr(c)


def test_a_token_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(f'[http]\napi_token = "{TOKEN}"\n')
    with pytest.raises(ConfigError, match=r"\[http\] api_token is a secret; set it only in the environment "
                                          r"variable VOICEBOT_API_TOKEN"):
        load_config(path, env={})


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[http\] api_token \(VOICEBOT_API_TOKEN\) must be at least 16 "
                                          r"characters, got 6"):
        load_config(env={"VOICEBOT_API_TOKEN": "secret"})


@pytest.mark.parametrize("listen", ["0.0.0.0:9090", "192.0.2.1:9090", "[::]:9090"])
def test_no_auth_refuses_a_non_loopback_address(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"\[http\] api_no_auth refuses to serve the control API without a "
                                          r"token on .*only a loopback listen address"):
        load_config(env={}, overrides={"http.listen": listen, "http.api_no_auth": "true"})


@pytest.mark.parametrize("listen", ["127.0.0.1:9090", "[::1]:9090", "localhost:9090"])
def test_no_auth_is_allowed_on_loopback(listen: str) -> None:
    assert load_config(env={}, overrides={"http.listen": listen, "http.api_no_auth": "true"}).http.api_no_auth


def test_no_auth_and_a_token_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="api_no_auth is set but so is VOICEBOT_API_TOKEN; choose one"):
        load_config(env={"VOICEBOT_API_TOKEN": TOKEN},
                    overrides={"http.listen": "127.0.0.1:9090", "http.api_no_auth": "true"})


def test_trunk_and_dialplans() -> None:
    c = load_config(env={"VOICEBOT_HTTP_TRUNK": "sip:trunk.example.com:5060",
                         "VOICEBOT_HTTP_DIALPLANS": "dialplans/reminder.yaml, dialplans/demo.yaml"})
    assert c.http.trunk == "sip:trunk.example.com:5060"
    assert c.http.dialplans == ("dialplans/reminder.yaml", "dialplans/demo.yaml")
    with pytest.raises(ConfigError,
                       match=r"\[http\] trunk must be a sip: or sips: URI, got 'trunk.example.com'"):
        load_config(env={"VOICEBOT_HTTP_TRUNK": "trunk.example.com"})


def test_voicebot_run_refuses_to_start_without_a_token_on_a_public_address(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    voicebot = Path(sys.executable).with_name("voicebot")
    result = subprocess.run([str(voicebot), "run", "--http-listen", "0.0.0.0:9", "--api-no-auth",
                             "--records-db", str(tmp_path / "calls.db")],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")},
                            cwd=tmp_path)
    assert result.returncode == 2, result
    assert "[http] api_no_auth refuses to serve the control API without a token on 0.0.0.0:9" in result.stderr


def test_the_event_replay_buffer_is_configurable_and_bounded() -> None:
    c = load_config(env={"VOICEBOT_HTTP_EVENTS_REPLAY": "50", "VOICEBOT_HTTP_EVENTS_REPLAY_S": "30"})
    assert (c.http.events_replay, c.http.events_replay_s) == (50, 30.0)
    assert (load_config(env={}).http.events_replay, load_config(env={}).http.events_replay_s) == (1000, 600.0)
    with pytest.raises(ConfigError, match=r"\[http\] events_replay must be 0..100000 events, got -1"):
        load_config(env={"VOICEBOT_HTTP_EVENTS_REPLAY": "-1"})
    with pytest.raises(ConfigError, match=r"\[http\] events_replay_s must be positive, got 0.0"):
        load_config(env={"VOICEBOT_HTTP_EVENTS_REPLAY_S": "0"})
