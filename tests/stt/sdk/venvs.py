"""Separate, cached virtualenvs for third-party SpeechKit SDKs (never installed into .venv).

Two different ``stt.proto`` files cannot be loaded into one Python process, and the SDKs pin their
own protobuf/grpcio ranges, so the SDKs live in virtualenvs of their own and their client scripts
run there as subprocesses. ``yandex-speechkit`` bundles its own ``yandex/cloud/ai/stt`` package (a
different stt.proto), so it gets a venv alone; ``yandex-ai-studio-sdk`` runs on ``yandexcloud``'s
stubs, so those two share one. A venv is created once per requirement set and Python version under
``.venv/sdk-clients/`` of this checkout (override with ``$VOICEBOT_SDK_VENV_DIR``), guarded by a
file lock so parallel test sessions on the shared machine do not build the same one twice;
``.ready`` marks a finished install. ``pip --no-compile`` skips byte-compiling thousands of
yandexcloud modules that are never imported (the biggest part of a fresh install).
"""

from __future__ import annotations

import fcntl
import hashlib
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
VENV_GROUPS = ((YANDEXCLOUD, AI_STUDIO), (SPEECHKIT,))


@dataclass(frozen=True, slots=True)
class SdkVenv:
    requirements: tuple[str, ...]  # "package==version", as installed
    python: Path | None  # the venv's interpreter, or None when it could not be built
    problem: str = ""  # why not (pip's last lines), for the skip reason


def venv_root() -> Path:
    override = os.environ.get("VOICEBOT_SDK_VENV_DIR")
    return Path(override) if override else REPO / ".venv" / "sdk-clients"


def clean_env() -> dict[str, str]:
    """The environment for SDK subprocesses: nothing of our venv leaks into theirs."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def ensure_venv(*sdks: tuple[str, str]) -> SdkVenv:
    """Create (or reuse) a virtualenv with each ``(package, version)``; never raises on install failure."""
    requirements = tuple(f"{package}=={version}" for package, version in sdks)
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(" ".join(requirements).encode()).hexdigest()[:10]
    root = venv_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{sdks[0][0]}-{digest}-{tag}"
    python = target / "bin" / "python"
    ready = target / ".ready"
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file() and python.exists():
            return SdkVenv(requirements, python)
        shutil.rmtree(target, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-compile", "-q"]
        steps = [
            ("python -m venv", [sys.executable, "-m", "venv", str(target)]),
            (f"pip install {' '.join(requirements)}", [*pip, *requirements]),
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
                return SdkVenv(requirements, None, f"`{label}` timed out after {INSTALL_TIMEOUT_S:.0f} s")
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
                return SdkVenv(requirements, None, f"`{label}` failed: {tail}")
        ready.write_text("\n".join(requirements) + "\n")
        return SdkVenv(requirements, python)


def ensure_all() -> dict[str, SdkVenv]:
    """Every SDK's venv (the groups built in parallel), by package name."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(VENV_GROUPS)) as pool:
        built = list(pool.map(lambda group: ensure_venv(*group), VENV_GROUPS))
    return {package: venv for group, venv in zip(VENV_GROUPS, built, strict=True) for package, _ in group}


HERE = Path(__file__).resolve().parent
CAPTURED = HERE / "captured"


def captured_path(package: str, version: str) -> Path:
    return CAPTURED / f"{package}-{version}.json"


def dump_wire(venv: SdkVenv, package: str) -> dict[str, object]:
    """Run ``dump_wire.py`` for ``package`` in its venv and return the JSON (see that script)."""
    import json

    assert venv.python is not None, venv.problem
    done = subprocess.run(
        [str(venv.python), "-I", str(HERE / "dump_wire.py"), package],
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
