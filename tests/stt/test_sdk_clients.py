"""Real third-party SpeechKit clients against our real server, the real model and real speech.

The SDKs are installed from PyPI into cached virtualenvs of their own (``tests/stt/sdk/venvs.py``;
never into .venv: two stt.proto files cannot share a process and the SDKs pin their own
protobuf/grpcio), and each client runs there as a subprocess against ``start_server`` on
127.0.0.1:0 with an API key:

* ``yandexcloud`` 0.413.0 (stubs generated from cloudapi HEAD) and ``yandex-speechkit`` 1.7.0
  (its own 2024-11 stub copies), each driving ``sdk/stub_client.py``: the official example's options
  (LINEAR16_PCM 8000 Hz, normalization, ru-RU/en-US whitelist, REAL_TIME), espeak-ng telephone-band
  speech (8 kHz, G.711 round trip) in 4000-byte chunks at real-time pace, every response printed as
  JSON. Asserted: status_code WORKING first, partial(s), one final with the key words,
  final_refinement for that final, eou_update at the final's end, ``channel_tag == "0"``, one
  session uuid, the echoed ``x-client-request-id``, status OK. A wrong key gives UNAUTHENTICATED
  with our message, as the SDK's stubs report it.
* ``yandex-speechkit``'s high-level recognizer (``model_repository.recognition_model(
  custom_endpoint=(addr, False))``), in its FULL_DATA default and in stream mode.
* TLS: the official example's ``grpc.ssl_channel_credentials()`` and yandex-speechkit's
  ``custom_endpoint=(addr, True)``, unchanged, against our TLS port with a self-signed certificate
  that the client process trusts through ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``.
* ``yandex-ai-studio-sdk`` 0.22.1, the current SDK: ``AIStudio(endpoint=None, service_map=
  {"ai-stt-v3": addr}, verify=False)`` and its speech_to_text model, ``run_stream`` (REAL_TIME) and
  ``run`` (FULL_DATA). It drops events with an empty channel_tag, so getting the final proves "0".

It also re-runs ``sdk/dump_wire.py`` in each venv and checks that ``sdk/captured/`` (which the unit
tests in ``sdk/test_sdk_wire.py`` use) is what the installed SDK really produces. If a venv cannot be
built (no package index), the tests that need it skip and say why.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.stt.sdk.venvs import (
    AI_STUDIO,
    ALL_SDKS,
    HERE,
    SPEECHKIT,
    YANDEXCLOUD,
    SdkVenv,
    captured_path,
    clean_env,
    comparable,
    dump_wire,
    ensure_all,
)
from voicebot.stt.engine import Engine
from voicebot.stt.server import RunningServer, ServerConfig, start_server
from voicebot.testing.speech import silence, telephone_speech

pytestmark = pytest.mark.model

KEY = "sdk-test-key"
SENTENCE = "my account number is four five six seven, please check my balance"
KEY_WORDS = ("account", "number", "check")
CLIENT_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def sdks() -> dict[str, SdkVenv]:
    # Both venvs at once: on a fresh machine this is most of the module's time.
    return ensure_all()


def _need(sdks: dict[str, SdkVenv], package: str) -> Path:
    sdk = sdks[package]
    if sdk.python is None:
        pytest.skip(f"cannot install {' '.join(sdk.requirements)} into a separate venv: {sdk.problem}")
    return sdk.python


@pytest.fixture(scope="module")
def engine() -> Engine:
    from voicebot.stt.model import load_engine

    return load_engine("base", workers=2)


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sdk") / "speech.pcm"
    path.write_bytes(silence(500) + telephone_speech(SENTENCE) + silence(1500))
    return path


@pytest.fixture
async def server(engine: Engine) -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({KEY})), engine=engine)
    try:
        yield running
    finally:
        await running.stop(1.0)


async def _run(python: Path, script: str, *args: str, env: dict[str, str] | None = None) -> list[Any]:
    """Run an SDK-side script (isolated mode: nothing of voicebot importable); its JSON lines."""
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-I",
        str(HERE / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"{script} exited {process.returncode}: {err.decode()[-2000:]}"
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("spec", ALL_SDKS, ids=lambda s: f"{s[0]}=={s[1]}")
def test_captured_wire_data_is_what_the_sdk_produces(sdks: dict[str, SdkVenv], spec: tuple[str, str]) -> None:
    _need(sdks, spec[0])
    stored = json.loads(captured_path(*spec).read_text())
    assert comparable(dump_wire(sdks[spec[0]], spec[0])) == comparable(stored), (
        f"{captured_path(*spec).name} is stale; re-capture with: .venv/bin/python -m tests.stt.sdk.capture"
    )


@pytest.mark.parametrize("package", [YANDEXCLOUD[0], SPEECHKIT[0]])
async def test_official_example_client_on_sdk_stubs(
    sdks: dict[str, SdkVenv], server: RunningServer, speech_file: Path, package: str
) -> None:
    python = _need(sdks, package)
    lines = await _run(
        python,
        "stub_client.py",
        "--endpoint",
        f"127.0.0.1:{server.port}",
        "--api-key",
        KEY,
        "--audio",
        str(speech_file),
        "--languages",
        "ru-RU,en-US",
        "--request-id",
        f"sdk-{package}",
    )
    header, responses, status = lines[0], lines[1:-1], lines[-1]
    # The client really used the SDK's generated stubs from its own venv.
    assert header["stubs"].startswith(str(python.parents[1])), header
    assert header["stubs"].endswith("yandex/cloud/ai/stt/v3/stt_pb2.py"), header
    assert status == {"status": "OK", "details": ""}, status

    events = [r["event"] for r in responses]
    assert events[0] == "status_code" and responses[0]["code_type"] == "WORKING", responses[0]
    results = [e for e in events if e != "status_code"]
    assert results[-3:] == ["final", "final_refinement", "eou_update"], results
    assert len(results) >= 4 and set(results[:-3]) == {"partial"}, results

    final = next(r for r in responses if r["event"] == "final")
    refinement = next(r for r in responses if r["event"] == "final_refinement")
    eou = next(r for r in responses if r["event"] == "eou_update")
    text = " ".join(final["texts"]).lower()
    assert all(word in text for word in KEY_WORDS), text
    assert final["words"], final
    refined = " ".join(refinement["texts"]).lower()
    assert "account" in refined and not re.search(r"\b(four|five|six|seven)\b", refined), refined
    assert refinement["final_index"] == final["cursors"]["final_index"] >= 1
    assert eou["time_ms"] == final["span_ms"][0][1] == eou["cursors"]["eou_time_ms"]

    assert {r["channel_tag"] for r in responses} == {"0"}
    assert len({r["uuid"] for r in responses}) == 1 and responses[0]["uuid"]
    assert {r["user_request_id"] for r in responses} == {f"sdk-{package}"}
    for earlier, later in itertools.pairwise(responses):
        for name, value in earlier["cursors"].items():
            assert later["cursors"][name] >= value, (name, earlier, later)
        assert later["wall_ms"] >= earlier["wall_ms"]


async def test_wrong_key_is_unauthenticated_on_sdk_stubs(
    sdks: dict[str, SdkVenv], server: RunningServer, speech_file: Path
) -> None:
    python = _need(sdks, YANDEXCLOUD[0])
    lines = await _run(
        python,
        "stub_client.py",
        "--endpoint",
        f"127.0.0.1:{server.port}",
        "--api-key",
        "not-a-key",
        "--audio",
        str(speech_file),
        "--burst",
    )
    assert lines[1:] == [{"status": "UNAUTHENTICATED", "details": "unknown API key in 'authorization'"}]


@pytest.mark.parametrize("mode", ["full", "stream"])
async def test_speechkit_high_level_recognizer(
    sdks: dict[str, SdkVenv], server: RunningServer, speech_file: Path, mode: str
) -> None:
    python = _need(sdks, SPEECHKIT[0])
    (transcriptions,) = await _run(
        python,
        "speechkit_client.py",
        "--endpoint",
        f"127.0.0.1:{server.port}",
        "--api-key",
        KEY,
        "--audio",
        str(speech_file),
        "--mode",
        mode,
    )
    # One channel, tagged "0"; the SDK asserts at most one non-empty final per EOU while reading.
    assert [t["channel"] for t in transcriptions] == ["0"], transcriptions
    (transcription,) = transcriptions
    assert all(word in transcription["raw_text"].lower() for word in KEY_WORDS), transcription
    (utterance,) = transcription["utterances"]
    assert utterance["words"] and utterance["normalized_text"], utterance
    assert not re.search(r"\b(four|five|six|seven)\b", utterance["normalized_text"].lower()), utterance
    assert 300 <= utterance["start_time_ms"] < utterance["end_time_ms"] <= utterance["eou_time_ms"]
    assert [code for code, _ in utterance["languages"]] == ["en-US"], utterance


async def test_ai_studio_run_stream(
    sdks: dict[str, SdkVenv], server: RunningServer, speech_file: Path
) -> None:
    python = _need(sdks, AI_STUDIO[0])
    events = await _run(
        python, "ai_studio_client.py", "--endpoint", f"127.0.0.1:{server.port}", "--api-key", KEY,
        "--audio", str(speech_file), "--mode", "stream",
    )  # fmt: skip
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status_code", kinds
    results = [k for k in kinds if k not in ("status_code", "partial")]
    assert results == ["final", "final_refinement", "eou_update"], kinds
    final = next(e for e in events if e["event"] == "final")
    assert all(word in " ".join(final["final"]).lower() for word in KEY_WORDS), final
    refinement = next(e for e in events if e["event"] == "final_refinement")
    assert not re.search(r"\b(four|five|six|seven)\b", refinement["final_refinement"].lower()), refinement
    assert next(e for e in events if e["event"] == "eou_update")["eou_update_ms"] > 0
    assert {e["channel_tag"] for e in events} == {"0"}


async def test_ai_studio_run(sdks: dict[str, SdkVenv], server: RunningServer, speech_file: Path) -> None:
    python = _need(sdks, AI_STUDIO[0])
    (channels,) = await _run(
        python, "ai_studio_client.py", "--endpoint", f"127.0.0.1:{server.port}", "--api-key", KEY,
        "--audio", str(speech_file), "--mode", "run",
    )  # fmt: skip
    assert [c["tag"] for c in channels] == ["0"], channels
    (utterance,) = channels[0]["utterances"]
    assert all(word in utterance["final_text"].lower() for word in KEY_WORDS), utterance
    assert utterance["refined"] and "account" in utterance["refined"].lower(), utterance


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_unchanged_clients_over_tls(
    sdks: dict[str, SdkVenv], engine: Engine, speech_file: Path, self_signed: tuple[Path, Path]
) -> None:
    # Clients hard-wired to grpc.ssl_channel_credentials() need no code change: only the trust store.
    cert, key = self_signed
    config = ServerConfig(
        listen="127.0.0.1:0", api_keys=frozenset({KEY}), tls_cert_path=cert, tls_key_path=key
    )
    running = await start_server(config, engine=engine)
    trust = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)}
    endpoint = f"localhost:{running.port}"
    try:
        lines = await _run(
            _need(sdks, YANDEXCLOUD[0]), "stub_client.py", "--endpoint", endpoint, "--api-key", KEY,
            "--audio", str(speech_file), "--burst", "--tls", env=trust,
        )  # fmt: skip
        assert lines[-1] == {"status": "OK", "details": ""}, lines[-1]
        assert [r["event"] for r in lines[1:-1] if r["event"] != "status_code"][-3:] == [
            "final",
            "final_refinement",
            "eou_update",
        ]
        (transcriptions,) = await _run(
            _need(sdks, SPEECHKIT[0]), "speechkit_client.py", "--endpoint", endpoint, "--api-key", KEY,
            "--audio", str(speech_file), "--tls", env=trust,
        )  # fmt: skip
        assert all(word in transcriptions[0]["raw_text"].lower() for word in KEY_WORDS), transcriptions
    finally:
        await running.stop(1.0)
