#!/usr/bin/env python3
"""Generate the Python code for protos/ into voicebot/stt/_proto/ (and check that it is current).

protoc writes absolute imports that follow the .proto paths (``from speechkit.stt.v3 import
stt_pb2``); we flatten the output into ``voicebot/stt/_proto/`` and rewrite those imports so the
generated modules live inside our package (``from voicebot.stt._proto import stt_pb2``). The
descriptor file names stay ``speechkit/stt/v3/*.proto``, which is what the wire reference asks for.

    scripts/gen_protos.py           regenerate the committed code
    scripts/gen_protos.py --check   exit 1 if the committed code differs from a fresh generation
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_PACKAGE_DIR = PROTO_ROOT / "speechkit" / "stt" / "v3"
OUT_DIR = ROOT / "voicebot" / "stt" / "_proto"
PY_PACKAGE = "voicebot.stt._proto"
INIT_TEXT = '"""Generated from protos/speechkit/stt/v3 by scripts/gen_protos.py. Do not edit."""\n'

_IMPORT_RE = re.compile(r"^from speechkit\.stt\.v3 import ", re.MULTILINE)


def _generate(dest: Path) -> None:
    """Run protoc (from grpcio-tools) into ``dest`` and flatten/rewrite the result."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        sys.exit("gen_protos: grpcio-tools is not installed; run scripts/setup (it installs .[dev])")
    protos = sorted(PROTO_PACKAGE_DIR.glob("*.proto"))
    if not protos:
        sys.exit(f"gen_protos: no .proto files under {PROTO_PACKAGE_DIR}")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as raw_dir:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={raw_dir}",
            f"--pyi_out={raw_dir}",
            f"--grpc_python_out={raw_dir}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            sys.exit("gen_protos: protoc failed (see the messages above)")
        dest.mkdir(parents=True, exist_ok=True)
        generated = Path(raw_dir) / "speechkit" / "stt" / "v3"
        for path in sorted(generated.iterdir()):
            text = _IMPORT_RE.sub(f"from {PY_PACKAGE} import ", path.read_text())
            (dest / path.name).write_text(text)
    (dest / "__init__.py").write_text(INIT_TEXT)


def _snapshot(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"})
    return {p.name: p.read_text() for p in files}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed generated code is stale")
    args = parser.parse_args()
    if not args.check:
        if OUT_DIR.exists():
            shutil.rmtree(OUT_DIR)
        _generate(OUT_DIR)
        print(f"gen_protos: wrote {', '.join(sorted(_snapshot(OUT_DIR)))} to {OUT_DIR.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = _snapshot(_generate_into(Path(tmp)))
    committed = _snapshot(OUT_DIR)
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    if stale:
        print(
            f"gen_protos: generated code in {OUT_DIR.relative_to(ROOT)} is stale or hand-edited "
            f"({', '.join(stale)}); run scripts/gen_protos.py and commit the result",
            file=sys.stderr,
        )
        return 1
    print("gen_protos: generated code is current")
    return 0


def _generate_into(directory: Path) -> Path:
    out = directory / "_proto"
    _generate(out)
    return out


if __name__ == "__main__":
    sys.exit(main())
