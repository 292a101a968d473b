"""Breaking changes between two versions of a port's JSON Schema.

What breaks a caller, and so needs a major version (`Version.is_breaking_bump_from`):
- a property that was there is gone (a workflow sends it, or reads it);
- a property's type changed so that a value the old schema accepted is no longer of an
  accepted type (`string` -> `integer`; `["string", "null"]` -> `string`); widening
  (`integer` -> `number`, adding `null`) is not breaking;
- in the input and config ports, a property that is newly required (old callers omit it).
Objects are followed through `properties` and arrays through `items`, so a change deep
inside the schema is found with its JSON path. Other keywords (formats, bounds, patterns)
are not compared: their effect on callers cannot be decided from the schemas alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

Port = Literal["input", "output", "config"]
PORTS: Final[tuple[Port, ...]] = ("input", "output", "config")
_ALL_TYPES: Final = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


@dataclass(frozen=True, slots=True)
class BreakingChange:
    """One change that needs a major version; `path` is a JSON path into the port's values."""

    port: Port
    path: str
    change: Literal["removed", "retyped", "newly-required"]
    detail: str

    def __str__(self) -> str:
        return f"schemas.{self.port} {self.path}: {self.detail}"


def _types(schema: Any) -> frozenset[str]:
    """The JSON types a schema admits by its `type` (or `enum`/`const`); all when unsaid."""
    if not isinstance(schema, dict):
        return _ALL_TYPES
    declared = schema.get("type")
    if isinstance(declared, str):
        found = {declared}
    elif isinstance(declared, list):
        found = {t for t in declared if isinstance(t, str)}
    else:
        values = schema.get("enum", [schema["const"]] if "const" in schema else None)
        if not isinstance(values, list):
            return _ALL_TYPES
        found = {json_type(v) for v in values}
    # An integer is a number, so a number schema admits every integer.
    return frozenset(found | ({"integer"} if "number" in found else set()))


def json_type(value: Any) -> str:
    """The JSON Schema type name of a parsed JSON value (`true` is boolean, not integer)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _show(types: frozenset[str]) -> str:
    shown = sorted(types - {"integer"} if "number" in types else types)
    return "any" if types == _ALL_TYPES else "|".join(shown)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if name.isidentifier() else f'{path}["{name}"]'


def _compare(port: Port, old: Any, new: Any, path: str, out: list[BreakingChange]) -> None:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    before, after = _types(old), _types(new)
    lost = before - after
    if lost:
        out.append(
            BreakingChange(
                port, path, "retyped", f"type changed from {_show(before)} to {_show(after)}"
            )
        )
        return
    old_props = old.get("properties")
    new_props = new.get("properties")
    if isinstance(old_props, dict):
        mine = new_props if isinstance(new_props, dict) else {}
        for name, sub in old_props.items():
            if name not in mine:
                out.append(BreakingChange(port, _child(path, name), "removed", "property removed"))
            else:
                _compare(port, sub, mine[name], _child(path, name), out)
    if port != "output":
        was = set(old.get("required") or [])
        now = set(new.get("required") or [])
        for name in sorted(now - was):
            out.append(
                BreakingChange(
                    port, _child(path, name), "newly-required", "property is now required"
                )
            )
    if "items" in old and "items" in new:
        _compare(port, old["items"], new["items"], f"{path}[*]", out)


def breaking_changes(old: dict[str, Any], new: dict[str, Any], port: Port) -> list[BreakingChange]:
    """The breaking changes from `old` to `new` schema of one port, outermost first."""
    found: list[BreakingChange] = []
    _compare(port, old, new, "$", found)
    return found


def schema_breaks(
    old: dict[Port, dict[str, Any]], new: dict[Port, dict[str, Any]]
) -> list[BreakingChange]:
    """Breaking changes across every port."""
    return [c for port in PORTS for c in breaking_changes(old[port], new[port], port)]


__all__ = ["PORTS", "BreakingChange", "Port", "breaking_changes", "schema_breaks"]
