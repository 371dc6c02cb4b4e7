"""Load a dialplan file: read, parse with line numbers, validate, return the IR.

Everything wrong with the file is reported at once as a :class:`DialplanError` whose lines read
``demo.yaml:14: state 'menu': unknown key 'promt' (did you mean 'prompt'?)``.
"""

from __future__ import annotations

from pathlib import Path

from voicebot.dialog.errors import DialplanError, DialplanProblem
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.schema import build_dialplan
from voicebot.dialog.yamlnodes import parse_yaml

MAX_FILE_BYTES = 1_000_000


def load_dialplan(path: str | Path) -> Dialplan:
    """Load and validate ``path``; raises :class:`DialplanError` listing every problem."""
    file = str(path)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DialplanError([DialplanProblem(file, 0, f"cannot read dialplan: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise DialplanError([DialplanProblem(file, 0, f"dialplan is larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = DialplanProblem(file, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        raise DialplanError([problem]) from None
    return load_dialplan_text(text, file=file, base_dir=p.parent)


def load_dialplan_text(text: str, *, file: str = "<string>", base_dir: Path | None = None) -> Dialplan:
    """Like :func:`load_dialplan` for text already in memory (audio paths resolve from ``base_dir``)."""
    problems: list[DialplanProblem] = []
    root = parse_yaml(text, file, problems)
    if root is None:
        raise DialplanError(problems)
    plan, more = build_dialplan(root, file, base_dir if base_dir is not None else Path.cwd())
    problems += more
    if problems or plan is None:
        raise DialplanError(problems)
    return plan
