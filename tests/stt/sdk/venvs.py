"""Separate, cached virtualenvs for third-party SpeechKit SDKs (never installed into .venv).

Two different ``stt.proto`` files cannot be loaded into one Python process, and the SDKs pin their
own protobuf/grpcio ranges, so each SDK gets its own virtualenv and its client scripts run there as
subprocesses. A venv is created once per (package, version, Python) under ``.venv/sdk-clients/`` of
this checkout (override with ``$VOICEBOT_SDK_VENV_DIR``), guarded by a file lock so parallel test
sessions on the shared machine do not build the same one twice; ``.ready`` marks a finished install.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
INSTALL_TIMEOUT_S = 600.0

# The SDKs whose clients we run, pinned so the captured wire vectors are reproducible.
YANDEXCLOUD = ("yandexcloud", "0.413.0")  # generated cloudapi stubs, descriptor-identical to HEAD
SPEECHKIT = ("yandex-speechkit", "1.7.0")  # its own (2024-11) stub copies + a high-level client
AI_STUDIO = ("yandex-ai-studio-sdk", "0.22.1")  # the current SDK, on yandexcloud's stubs
ALL_SDKS = (YANDEXCLOUD, SPEECHKIT, AI_STUDIO)


@dataclass(frozen=True, slots=True)
class SdkVenv:
    package: str
    version: str
    python: Path | None  # the venv's interpreter, or None when it could not be built
    problem: str = ""  # why not (pip's last lines), for the skip reason


def venv_root() -> Path:
    override = os.environ.get("VOICEBOT_SDK_VENV_DIR")
    return Path(override) if override else REPO / ".venv" / "sdk-clients"


def clean_env() -> dict[str, str]:
    """The environment for SDK subprocesses: nothing of our venv leaks into theirs."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def ensure_venv(package: str, version: str) -> SdkVenv:
    """Create (or reuse) a virtualenv with ``package==version``; never raises for install failures."""
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    root = venv_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{package}-{version}-{tag}"
    python = target / "bin" / "python"
    ready = target / ".ready"
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file() and python.exists():
            return SdkVenv(package, version, python)
        shutil.rmtree(target, ignore_errors=True)
        steps = [
            ("python -m venv", [sys.executable, "-m", "venv", str(target)]),
            (
                f"pip install {package}=={version}",
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    f"{package}=={version}",
                ],
            ),
        ]
        for label, step in steps:
            try:
                done = subprocess.run(
                    step,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    env=clean_env(),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return SdkVenv(package, version, None, f"`{label}` timed out after {INSTALL_TIMEOUT_S:.0f} s")
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
                return SdkVenv(package, version, None, f"`{label}` failed: {tail}")
        ready.write_text(f"{package}=={version}\n")
        return SdkVenv(package, version, python)


HERE = Path(__file__).resolve().parent
CAPTURED = HERE / "captured"


def captured_path(package: str, version: str) -> Path:
    return CAPTURED / f"{package}-{version}.json"


def dump_wire(sdk: SdkVenv) -> dict[str, object]:
    """Run ``dump_wire.py`` in the SDK's venv and return its JSON (see that script)."""
    import json

    assert sdk.python is not None, sdk.problem
    done = subprocess.run(
        [str(sdk.python), "-I", str(HERE / "dump_wire.py"), sdk.package],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def comparable(dump: dict[str, object]) -> dict[str, object]:
    """The parts of a dump that must not change for a pinned SDK (its protobuf runtime may float)."""
    return {k: v for k, v in dump.items() if k != "protobuf"}
