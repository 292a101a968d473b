"""Read a workflow file: YAML with a line and column for every node, then the spec model.

PyYAML's composer keeps a mark on every node; the values are built from the nodes here
(not by PyYAML's constructor) so that each value's data path gets the position it was
written at. Every problem found (YAML syntax, duplicate keys, the model's field checks)
is reported together, as file:line:column, the step and the field.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from .errors import NodePath, PathPart, Position, Problem, WorkflowInvalid
from .source import SourceMap
from .spec import FORMS, WorkflowSpec

# Union tags pydantic adds to an error's location; they are not keys of the document.
_TAGS: Final = frozenset({"connector", "approval", "manual", "cron", "webhook", "nats"})


def _position(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a composed YAML node tree into plain JSON values and their positions."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.values: dict[NodePath, Position] = {}
        self.keys: dict[NodePath, Position] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: NodePath) -> Any:
        self.values[path] = _position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: NodePath) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int) or isinstance(key, bool):
                self._problem(key_node, path, f"a key must be a string, not {key_node.tag}")
                continue
            child = (*path, key)
            if key in result:
                first = self.keys[child]
                self._problem(key_node, path, f"duplicate key {key!r} (first at line {first.line})")
                continue
            self.keys[child] = _position(key_node.start_mark)
            result[key] = self.build(value_node, child)
        return result

    def _scalar(self, node: yaml.Node, path: NodePath) -> Any:
        value = self.loader.construct_object(node)
        if isinstance(value, datetime.date | datetime.datetime):
            # JSON has no dates; keep what the author wrote.
            return str(node.value)
        if isinstance(value, float) and not math.isfinite(value):
            self._problem(node, path, f"{node.value!r} is not a finite number")
            return None
        if isinstance(value, bytes | set):
            self._problem(node, path, f"{node.tag} values are not JSON")
            return None
        return value

    def _problem(self, node: yaml.Node, path: NodePath, message: str) -> None:
        source = SourceMap(self.file)
        self.problems.append(source.problem(path, message, at=_position(node.start_mark)))


def _parse(text: str, file: str) -> tuple[Any, SourceMap]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise WorkflowInvalid(
                [Problem("the file is empty; a workflow is a YAML mapping", file)]
            )
        builder = _Builder(loader, file)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _position(mark) if mark is not None else None
        message = f"not valid YAML: {exc.problem or exc.context}"
        raise WorkflowInvalid([Problem(message, file, where)]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise WorkflowInvalid(builder.problems)
    return data, SourceMap(file, builder.values, builder.keys)


def _child(value: Any, part: PathPart) -> tuple[bool, Any]:
    if isinstance(value, dict):
        return (part in value), value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return True, value[part]
    return False, None


def _data_path(data: Any, loc: Iterable[PathPart]) -> NodePath:
    """The document path of a pydantic error location (without union tags)."""
    parts = list(loc)
    path: list[PathPart] = []
    here = data
    for i, part in enumerate(parts):
        found, child = _child(here, part)
        if not found and part in _TAGS and i < len(parts) - 1:
            continue
        here = child
        path.append(part)
    return tuple(path)


def _message(error: Any, path: NodePath) -> str:
    kind = error["type"]
    name = path[-1] if path else ""
    if kind == "missing":
        return f"{name!r} is required"
    if kind == "extra_forbidden":
        return f"unknown field {name!r}"
    if kind == "string_pattern_mismatch":
        form = FORMS.get(error["ctx"]["pattern"], f"text matching {error['ctx']['pattern']}")
        return f"{error['input']!r} is not {form}"
    return str(error["msg"]).removeprefix("Value error, ")


def _problem(source: SourceMap, data: Any, error: Any) -> Problem:
    path = _data_path(data, error["loc"])
    if path and path[-1] == "[key]":  # a mapping key (a step id) that has the wrong form
        path = path[:-1]
        return source.problem(path, _message(error, path), key=True)
    if error["type"] == "missing":  # point at the entry that lacks the field
        return source.problem(path, _message(error, path), at=source.position(path[:-1], key=True))
    key = error["type"] == "extra_forbidden"
    return source.problem(path, _message(error, path), key=key)


def spec_from_data(data: Any, source: SourceMap | None = None) -> WorkflowSpec:
    """Validate parsed data as a spec; WorkflowInvalid lists every field problem."""
    where = source or SourceMap()
    if not isinstance(data, dict):
        raise WorkflowInvalid([where.problem((), "a workflow is a YAML mapping (name, steps ...)")])
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise WorkflowInvalid([_problem(where, data, e) for e in exc.errors()]) from None
    return spec.with_source(where)


def load_spec_text(text: str, file: str = "<workflow>") -> WorkflowSpec:
    """Parse a workflow from YAML text; `file` names it in problems."""
    data, source = _parse(text, file)
    return spec_from_data(data, source)


def load_spec(path: Path) -> WorkflowSpec:
    """Parse a workflow file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowInvalid([Problem("no such file", str(path))]) from None
    except UnicodeDecodeError as exc:
        raise WorkflowInvalid([Problem(f"not UTF-8 text: {exc.reason}", str(path))]) from None
    return load_spec_text(text, str(path))


__all__ = ["load_spec", "load_spec_text", "spec_from_data"]
