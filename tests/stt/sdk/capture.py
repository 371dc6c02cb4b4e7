"""Re-capture the third-party wire data under ``captured/`` (run after changing a pinned SDK).

    .venv/bin/python -m tests.stt.sdk.capture

Builds (or reuses) each SDK's venv, runs ``dump_wire.py`` there and writes
``captured/<package>-<version>.json``; the unit tests in ``test_sdk_wire.py`` read those files.
"""

from __future__ import annotations

import json
import sys

from tests.stt.sdk.venvs import ALL_SDKS, CAPTURED, captured_path, dump_wire, ensure_all


def main() -> int:
    CAPTURED.mkdir(exist_ok=True)
    venvs = ensure_all()
    for package, version in ALL_SDKS:
        venv = venvs[package]
        if venv.python is None:
            print(f"{package}=={version}: cannot build its venv: {venv.problem}", file=sys.stderr)
            return 1
        path = captured_path(package, version)
        path.write_text(json.dumps(dump_wire(venv, package), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
