"""The dialplan checker's vocabulary: typed reads of located YAML nodes that record problems.

:class:`Checker` collects every problem with its ``file:line`` instead of raising, and remembers
the ``goto`` targets and ``{variable}`` uses it saw so the whole plan can be checked at the end
(:mod:`voicebot.dialog.schema`). Messages name the key, what was expected and what was found.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from voicebot.dialog.errors import DialplanProblem
from voicebot.dialog.ir import Template
from voicebot.dialog.yamlnodes import YMap, YNode, YScalar, YSeq

MAX_TIMEOUT_S = 600.0

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DTMF_RE = re.compile(r"^[0-9*#A-D]$")

T = TypeVar("T")


class Checker:
    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.problems: list[DialplanProblem] = []
        # (line, where, target) of every goto, checked once all states are known.
        self.targets: list[tuple[int, str, str]] = []
        # (line, where, variable) of every template variable use.
        self.uses: list[tuple[int, str, str]] = []
        self.assigned: set[str] = set()

    def error(self, line: int, message: str) -> None:
        self.problems.append(DialplanProblem(self.file, line, message))

    # -- shapes --------------------------------------------------------------------------------

    def mapping(self, node: YNode, where: str, what: str) -> YMap | None:
        if isinstance(node, YMap):
            return node
        self.error(node.line, f"{where}: {what} must be a mapping of keys, not {describe(node)}")
        return None

    def keys(
        self, node: YMap, allowed: Iterable[str], where: str, hints: Mapping[str, str] | None = None
    ) -> None:
        """Report keys not in ``allowed``; ``hints`` maps a likely mistake to its own advice."""
        allowed = tuple(allowed)
        for key, (line, _value) in node.items.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
                if hints is not None and key in hints:
                    hint = f" ({hints[key]})"
                self.error(line, f"{where}: unknown key '{key}'{hint}")

    def get(self, node: YMap, key: str) -> tuple[int, YNode] | None:
        return node.items.get(key)

    def require(self, node: YMap, key: str, where: str) -> tuple[int, YNode] | None:
        item = node.items.get(key)
        if item is None:
            self.error(node.line, f"{where}: missing required key '{key}'")
        return item

    def string(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.value
        if isinstance(node, YScalar) and node.value is None:
            self.error(line, f"{where}: '{key}' has no value")
        else:
            self.error(line, f"{where}: '{key}' must be a string, not {describe(node)}")
        return None

    def scalar_text(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        """A string, or a number written without quotes (variables and set values)."""
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, str | int | float) and not isinstance(
            node.value, bool
        ):
            return str(node.value)
        self.error(line, f"{where}: '{key}' must be a string or number, not {describe(node)}")
        return None

    def boolean(self, item: tuple[int, YNode], where: str, key: str) -> bool | None:
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, bool):
            return node.value
        self.error(line, f"{where}: '{key}' must be true or false, not {describe(node)}")
        return None

    def seconds(self, item: tuple[int, YNode], where: str, key: str) -> float | None:
        line, node = item
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_TIMEOUT_S:
            return float(value)
        self.error(
            line,
            f"{where}: '{key}' must be a number of seconds greater than 0 and at most "
            f"{MAX_TIMEOUT_S:g}, not {describe(node)}",
        )
        return None

    def count(self, item: tuple[int, YNode], where: str, key: str, low: int, high: int) -> int | None:
        line, node = item
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.error(
            line, f"{where}: '{key}' must be a whole number from {low} to {high}, not {describe(node)}"
        )
        return None

    def fraction(self, item: tuple[int, YNode], where: str, key: str) -> float | None:
        line, node = item
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
        self.error(line, f"{where}: '{key}' must be a confidence from 0 to 1, not {describe(node)}")
        return None

    def dtmf(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        line, node = item
        if isinstance(node, YScalar):
            value = node.value
            if isinstance(value, int) and not isinstance(value, bool):
                self.error(line, f'{where}: DTMF key {key}: {value} must be quoted: write {key}: "{value}"')
                return None
            if value is None:
                self.error(
                    line,
                    f"{where}: '{key}' has no value "
                    f"(an unquoted # starts a YAML comment: write {key}: \"#\")",
                )
                return None
            if isinstance(value, str) and DTMF_RE.match(value):
                return value
        self.error(
            line, f"{where}: '{key}' must be one DTMF key 0-9, *, # or A-D in quotes, not {describe(node)}"
        )
        return None

    def state_ref(self, item: tuple[int, YNode], where: str, key: str) -> str | None:
        name = self.string(item, where, key)
        if name is not None:
            self.targets.append((item[0], f"{where}: {key}", name))
        return name

    def template(self, item: tuple[int, YNode], where: str, key: str) -> Template | None:
        text = self.scalar_text(item, where, key)
        if text is None:
            return None
        template, message = parse_template(text)
        if template is None:
            self.error(item[0], f"{where}: '{key}': {message}")
            return None
        for name in template.variables:
            self.uses.append((item[0], f"{where}: '{key}'", name))
        return template

    def string_list(self, item: tuple[int, YNode], where: str, key: str) -> list[str]:
        line, node = item
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return [node.value]
        if not isinstance(node, YSeq):
            self.error(line, f"{where}: '{key}' must be a list of strings, not {describe(node)}")
            return []
        out = []
        for child in node.items:
            if isinstance(child, YScalar) and isinstance(child.value, str | int) and not isinstance(
                child.value, bool
            ):
                out.append(str(child.value))
            else:
                self.error(child.line, f"{where}: '{key}' items must be strings, not {describe(child)}")
        return out

    def variable_name(self, line: int, where: str, name: str) -> bool:
        if NAME_RE.match(name):
            return True
        self.error(line, f"{where}: '{name}' is not a variable name (letters, digits and _)")
        return False


def describe(node: YNode) -> str:
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    if node.value is None:
        return "nothing"
    if isinstance(node.value, bool):
        return f"{str(node.value).lower()}"
    if isinstance(node.value, str):
        text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
        # One problem, one line: show control characters escaped.
        return "'" + text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"
    return f"{node.value!r}"


def parse_template(text: str) -> tuple[Template | None, str]:
    """``"Hello {name}"`` -> Template; ``{{`` and ``}}`` are literal braces."""
    literals: list[str] = []
    variables: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "{" and text.startswith("{{", i):
            buf.append("{")
            i += 2
        elif ch == "}" and text.startswith("}}", i):
            buf.append("}")
            i += 2
        elif ch == "{":
            end = text.find("}", i)
            if end < 0:
                return None, f"unclosed '{{' at character {i + 1} (write {{{{ for a literal brace)"
            name = text[i + 1:end].strip()
            if not NAME_RE.match(name):
                return None, f"'{{{name}}}' is not a variable name (letters, digits and _)"
            literals.append("".join(buf))
            buf = []
            variables.append(name)
            i = end + 1
        elif ch == "}":
            return None, f"unmatched '}}' at character {i + 1} (write }}}} for a literal brace)"
        else:
            buf.append(ch)
            i += 1
    literals.append("".join(buf))
    return Template(text, tuple(literals), tuple(variables)), ""


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def or_default(value: T | None, default: T) -> T:
    return default if value is None else value

