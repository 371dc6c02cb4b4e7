"""The layering rule of docs/architecture.md, checked on the import graph (ast, nothing imported).

1. Protocol cores (sans-IO) import no ``asyncio``, ``socket``, ``grpc``, ``time`` or ``threading``,
   directly or through another voicebot module they import. Imports under ``if TYPE_CHECKING:``
   do not run and are not counted for this rule.
2. The packages ``sip``, ``rtp``, ``stt`` and ``dialog`` do not import each other (type-only
   imports count: they couple the packages just the same); ``app``/``telephony`` wire them.
3. ``media`` is a leaf: it imports no other voicebot package (``rtp``, ``stt``, ``tts`` may import it).
4. ``dialog`` does not import ``tts``: it asks a renderer protocol for PCM (issue 8).

KNOWN_VIOLATIONS lists what was already broken when the rule was written down. The test fails on
any violation not listed, and also on a listed one that is gone, so the list can only shrink.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent / "voicebot"

FORBIDDEN_IN_CORES = ("asyncio", "socket", "grpc", "time", "threading")
PEER_PACKAGES = ("sip", "rtp", "stt", "dialog")

_SIP_ADAPTERS = {"voicebot.sip.udp", "voicebot.sip"}


def _core_modules(root: Path = ROOT) -> set[str]:
    sip = {
        m for m in _all_modules(root)
        if m.startswith("voicebot.sip.") and m not in _SIP_ADAPTERS
    }
    named = {
        "voicebot.rtp.packet", "voicebot.rtp.dtmf", "voicebot.rtp.jitter", "voicebot.rtp.session",
        "voicebot.stt.session", "voicebot.stt.endpoint", "voicebot.stt.normalize", "voicebot.stt.hints",
        "voicebot.stt.stream", "voicebot.stt.streamparts",
        "voicebot.stt.guard",
        "voicebot.stt.features", "voicebot.stt.hinted", "voicebot.stt.modelfiles",
        "voicebot.dialog.machine", "voicebot.dialog.match", "voicebot.dialog.schema", "voicebot.dialog.ir",
        "voicebot.dialog.loader", "voicebot.dialog.checker", "voicebot.dialog.schema_listen",
        "voicebot.dialog.machine_base", "voicebot.dialog.understand", "voicebot.dialog.phonetic",
        "voicebot.dialog.expect",
        "voicebot.amd.detector", "voicebot.amd.tone", "voicebot.campaign.schedule", "voicebot.editdistance",
    }
    return sip | (named & _all_modules(root))  # stt.stream counts once it exists


# Already broken when the rule was written; each entry is (rule, module, imported) and names the fix.
# The dialog's tts imports went when runner.py started asking a renderer protocol (issue 8).
KNOWN_VIOLATIONS: frozenset[tuple[str, str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the imported module, absolute
    type_only: bool  # under ``if TYPE_CHECKING:``
    line: int


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def _sources(root: Path = ROOT) -> dict[str, Path]:
    return {
        _module_name(root, p): p for p in root.rglob("*.py") if "_proto" not in p.parts
    }


def _all_modules(root: Path = ROOT) -> set[str]:
    return set(_sources(root))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def _imports(module: str, root: Path = ROOT) -> tuple[Import, ...]:
    path = _sources(root)[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_stmt(stmt, True)
                for stmt in child.orelse:
                    visit_stmt(stmt, type_only)
                continue
            visit_stmt(child, type_only)

    def visit_stmt(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, type_only, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append(Import(target, type_only, node.lineno))
            # ``from voicebot.stt import session`` imports the submodule too.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in _sources(root):
                    found.append(Import(sub, type_only, node.lineno))
        else:
            visit(node, type_only)

    visit(tree, False)
    return tuple(found)


def _voicebot_target(name: str, root: Path = ROOT) -> str | None:
    """The voicebot module an import resolves to (the longest known prefix), else None."""
    while name:
        if name in _sources(root):
            return name
        name = name.rpartition(".")[0]
    return None


def _top(name: str) -> str:
    return name.split(".")[0]


def _runtime_closure(module: str, root: Path = ROOT) -> dict[str, list[str]]:
    """Every voicebot module ``module`` imports at run time, with the path that reaches it."""
    seen: dict[str, list[str]] = {module: [module]}
    todo = [module]
    while todo:
        current = todo.pop()
        for imp in _imports(current, root):
            if imp.type_only:
                continue
            target = _voicebot_target(imp.module, root)
            # Importing voicebot.x.y runs voicebot/__init__ and voicebot/x/__init__ first.
            chain: list[str] = []
            if target is not None:
                parts = target.split(".")
                chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            for mod in chain:
                if mod in _sources(root) and mod not in seen:
                    seen[mod] = [*seen[current], mod]
                    todo.append(mod)
    return seen


def _violations(root: Path = ROOT) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for core in sorted(_core_modules(root)):
        for mod in _runtime_closure(core, root):
            for imp in _imports(mod, root):
                if not imp.type_only and _top(imp.module) in FORBIDDEN_IN_CORES:
                    via = "" if mod == core else f" via {mod}"
                    found.add(("core-io", core, f"{_top(imp.module)}{via}"))
    for module in sorted(_sources(root)):
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in (*PEER_PACKAGES, "media"):
            continue
        own = parts[1]
        for imp in _imports(module, root):
            target = _voicebot_target(imp.module, root)
            if target is None:
                continue
            tparts = target.split(".")
            other = tparts[1] if len(tparts) > 1 else ""
            if own in PEER_PACKAGES and other in PEER_PACKAGES and other != own:
                found.add(("peer-package", module, target))
            if own == "media" and other not in ("media", "errors", ""):
                found.add(("media-leaf", module, target))
            if own == "dialog" and other == "tts":
                found.add(("dialog-renderer", module, target))
    return found


def test_the_cores_exist() -> None:
    cores = _core_modules()
    assert {"voicebot.sip.useragent", "voicebot.rtp.session", "voicebot.stt.session",
            "voicebot.dialog.machine"} <= cores
    assert "voicebot.sip.udp" not in cores


def test_import_parser_sees_relative_and_type_only_imports() -> None:
    # The checker is only as good as its import reader: check it on a module we know.
    names = {imp.module for imp in _imports("voicebot.rtp.udp")}
    assert "asyncio" in names and "voicebot.rtp.session" in names


def test_layering_rule_holds() -> None:
    found = _violations()
    new = sorted(found - KNOWN_VIOLATIONS)
    assert not new, "layering violations (see docs/architecture.md):\n" + "\n".join(map(str, new))


def test_known_violations_are_still_real() -> None:
    gone = sorted(KNOWN_VIOLATIONS - _violations())
    assert not gone, "fixed; delete from KNOWN_VIOLATIONS:\n" + "\n".join(map(str, gone))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "voicebot"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "clock.py": "import time\n",
        "sip/__init__.py": "",
        "sip/useragent.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n"
                            "from .. import clock\n",
        "sip/udp.py": "import asyncio\nfrom voicebot.rtp import session\n",
        "rtp/__init__.py": "",
        "rtp/session.py": "from voicebot.media.g711 import x\n",
        "media/__init__.py": "",
        "media/g711.py": "from voicebot.stt.audio import y\n",
        "stt/__init__.py": "",
        "stt/audio.py": "",
    })
    # The type-only asyncio in useragent and sip.udp's asyncio (an adapter) are allowed.
    assert _violations(root) == {
        ("core-io", "voicebot.sip.useragent", "time via voicebot.clock"),
        ("peer-package", "voicebot.sip.udp", "voicebot.rtp"),
        ("peer-package", "voicebot.sip.udp", "voicebot.rtp.session"),
        ("media-leaf", "voicebot.media.g711", "voicebot.stt.audio"),
    }
