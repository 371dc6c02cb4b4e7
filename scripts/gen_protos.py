#!/usr/bin/env python3
"""Generate the Python code for protos/ into voicebot/*/_proto/ (and check that it is current).

Two proto packages, each generated into its own Python package:

    protos/speechkit/stt/v3  ->  voicebot/stt/_proto   (recognition: server and call-leg client)
    protos/speechkit/tts/v3  ->  voicebot/tts/_proto   (synthesis: SpeechKit TTS client, test fake)

protoc writes absolute imports that follow the .proto paths (``from speechkit.stt.v3 import
stt_pb2``); we flatten the output into the package directory and rewrite those imports so the
generated modules live inside our package (``from voicebot.stt._proto import stt_pb2``). The
descriptor file names stay ``speechkit/<api>/v3/*.proto``, which is what the wire reference asks for.

    scripts/gen_protos.py           regenerate the committed code
    scripts/gen_protos.py --check   exit 1 if the committed code differs from a fresh generation
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


@dataclass(frozen=True)
class ProtoPackage:
    api: str  # "stt" or "tts": protos/speechkit/<api>/v3 -> voicebot/<api>/_proto

    @property
    def proto_dir(self) -> Path:
        return PROTO_ROOT / "speechkit" / self.api / "v3"

    @property
    def out_dir(self) -> Path:
        return ROOT / "voicebot" / self.api / "_proto"

    @property
    def py_package(self) -> str:
        return f"voicebot.{self.api}._proto"

    @property
    def init_text(self) -> str:
        return f'"""Generated from protos/speechkit/{self.api}/v3 by scripts/gen_protos.py. Do not edit."""\n'

    @property
    def import_re(self) -> re.Pattern[str]:
        return re.compile(rf"^from speechkit\.{self.api}\.v3 import ", re.MULTILINE)


PACKAGES = (ProtoPackage("stt"), ProtoPackage("tts"))


def _generate(package: ProtoPackage, dest: Path) -> None:
    """Run protoc (from grpcio-tools) into ``dest`` and flatten/rewrite the result."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        sys.exit("gen_protos: grpcio-tools is not installed; run scripts/setup (it installs .[dev])")
    protos = sorted(package.proto_dir.glob("*.proto"))
    if not protos:
        sys.exit(f"gen_protos: no .proto files under {package.proto_dir}")
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
        generated = Path(raw_dir) / "speechkit" / package.api / "v3"
        for path in sorted(generated.iterdir()):
            text = package.import_re.sub(f"from {package.py_package} import ", path.read_text())
            (dest / path.name).write_text(text)
    (dest / "__init__.py").write_text(package.init_text)


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
        for package in PACKAGES:
            if package.out_dir.exists():
                shutil.rmtree(package.out_dir)
            _generate(package, package.out_dir)
            print(f"gen_protos: wrote {', '.join(sorted(_snapshot(package.out_dir)))} "
                  f"to {package.out_dir.relative_to(ROOT)}")
        return 0
    failed = False
    for package in PACKAGES:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "_proto"
            _generate(package, out)
            fresh = _snapshot(out)
        committed = _snapshot(package.out_dir)
        names = fresh.keys() | committed.keys()
        stale = sorted(name for name in names if fresh.get(name) != committed.get(name))
        if stale:
            print(
                f"gen_protos: generated code in {package.out_dir.relative_to(ROOT)} is stale or hand-edited "
                f"({', '.join(stale)}); run scripts/gen_protos.py and commit the result",
                file=sys.stderr,
            )
            failed = True
    if failed:
        return 1
    print("gen_protos: generated code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
