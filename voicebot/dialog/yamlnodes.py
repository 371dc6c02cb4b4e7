"""YAML parsing that keeps line numbers, so every dialplan error can say ``file:line``.

PyYAML's composer already records a start mark on every node; instead of constructing plain
Python objects (which loses the marks and silently keeps the last of duplicate keys), this module
turns the node graph into :class:`YMap` / :class:`YSeq` / :class:`YScalar` with 1-based lines, and
reports duplicate keys, non-string keys and syntax errors as problems instead of raising on the
first one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from voicebot.dialog.errors import DialplanProblem

Scalar = str | int | float | bool | None


@dataclass(slots=True)
class YScalar:
    line: int
    value: Scalar


@dataclass(slots=True)
class YSeq:
    line: int
    items: list[YNode] = field(default_factory=list)


@dataclass(slots=True)
class YMap:
    line: int
    # key -> (line of the key, value)
    items: dict[str, tuple[int, YNode]] = field(default_factory=dict)


YNode = YScalar | YSeq | YMap


def parse_yaml(text: str, file: str, problems: list[DialplanProblem]) -> YNode | None:
    """Parse one YAML document; syntax errors and duplicate keys are appended to ``problems``."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            problems.append(DialplanProblem(file, 1, "the file is empty; a dialplan is a YAML mapping"))
            return None
        return _convert(root, loader, file, problems, depth=0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problems.append(DialplanProblem(file, line, f"YAML syntax error: {exc.problem or exc}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(DialplanProblem(file, 1, f"YAML error: {exc}"))
        return None
    finally:
        loader.dispose()


_MAX_DEPTH = 50


def _convert(
    node: yaml.Node, loader: yaml.SafeLoader, file: str, problems: list[DialplanProblem], depth: int
) -> YNode:
    line = node.start_mark.line + 1
    if depth > _MAX_DEPTH:
        problems.append(DialplanProblem(file, line, f"nesting deeper than {_MAX_DEPTH} levels"))
        return YScalar(line, None)
    if isinstance(node, yaml.ScalarNode):
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problems.append(DialplanProblem(file, line, f"bad value: {exc.problem}"))
            return YScalar(line, None)
        if not isinstance(value, str | int | float | bool) and value is not None:
            # Timestamps, binary: a dialplan never needs them; keep the source text.
            value = str(node.value)
        return YScalar(line, value)
    if isinstance(node, yaml.SequenceNode):
        return YSeq(line, [_convert(item, loader, file, problems, depth + 1) for item in node.value])
    assert isinstance(node, yaml.MappingNode)
    out = YMap(line)
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(DialplanProblem(file, key_line, "mapping keys must be plain names"))
            continue
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            problems.append(DialplanProblem(
                file, key_line,
                f"key {key_node.value} must be quoted (a YAML {type(key).__name__} is not a name): "
                f'write "{key_node.value}"'))
            key = str(key_node.value)
        if key in out.items:
            first_line = out.items[key][0]
            message = f"duplicate key '{key}' (first at line {first_line})"
            problems.append(DialplanProblem(file, key_line, message))
            continue
        value = _convert(value_node, loader, file, problems, depth + 1)
        if isinstance(value, YMap | YSeq):
            # A block mapping starts on the line after its key; errors about the whole mapping
            # ("missing required key") read better pointing at the key.
            value.line = key_line
        out.items[key] = (key_line, value)
    return out
