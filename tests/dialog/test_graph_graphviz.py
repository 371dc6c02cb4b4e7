"""The DOT that ``voicebot dialplan graph`` writes is accepted by the real Graphviz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from voicebot.cli import main

pytestmark = pytest.mark.adapter

DEMO = str(Path(__file__).parents[2] / "dialplans" / "demo.yaml")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_graphviz_accepts_the_dot(tmp_path: Path) -> None:
    dot_file = tmp_path / "demo.dot"
    assert main(["dialplan", "graph", DEMO, "-o", str(dot_file)]) == 0
    svg = subprocess.run(["dot", "-Tsvg", str(dot_file)], capture_output=True, check=True, timeout=60).stdout
    assert b"<svg" in svg and b"ask_account" in svg
