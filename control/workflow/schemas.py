"""Reading JSON Schemas the way port linting needs: the sub-schema at a path, its types,
and whether two sets of types can ever meet. Anything the linter cannot see through
(`$ref`, `anyOf` ...) counts as "any", so linting never rejects what might be valid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowforge.marketplace.schemadiff import json_type

from .errors import PathPart, format_path

Schema = Mapping[str, Any]
_NUMERIC = frozenset({"integer", "number"})


def types(schema: Schema | None) -> frozenset[str] | None:
    """The JSON types a schema admits, or None when it does not say."""
    if schema is None:
        return None
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(str(t) for t in declared)
    if "const" in schema:
        return frozenset({json_type(schema["const"])})
    if isinstance(schema.get("enum"), list):
        return frozenset(json_type(v) for v in schema["enum"])
    return None


def shown(kinds: frozenset[str]) -> str:
    return " or ".join(sorted(kinds))


def fits(given: frozenset[str] | None, wanted: frozenset[str] | None) -> bool:
    """Whether a value of `given` types can be one of `wanted` (integer and number meet:
    a number may be integral)."""
    if given is None or wanted is None:
        return True
    if given & wanted:
        return True
    return bool(given & _NUMERIC and wanted & _NUMERIC)


def field_schema(schema: Schema, name: str, *, strict: bool = True) -> tuple[Schema | None, bool]:
    """The schema of one object field, and whether the object has that field at all.

    `strict` (for what is read: inputs, upstream outputs) also refuses a name outside the
    declared properties when the schema says nothing about others; otherwise (for what is
    written: a connector's input) only `additionalProperties: false` refuses it.
    """
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and name in properties:
        field = properties[name]
        return (field if isinstance(field, Mapping) else None), True
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        return extra, True
    if extra is False or (strict and isinstance(properties, Mapping) and extra is not True):
        # Declared fields and no word on others: a name outside them is most likely a typo.
        return None, False
    return None, True


def schema_at(schema: Schema | None, path: Sequence[PathPart]) -> tuple[Schema | None, str | None]:
    """The sub-schema at `path` (None: anything), or a reason the path cannot exist."""
    here = schema
    for depth, part in enumerate(path):
        if here is None:
            return None, None
        kinds = types(here)
        where = format_path(path[:depth])
        if isinstance(part, str):
            if kinds is not None and "object" not in kinds:
                return None, f"{where or 'it'} is {shown(kinds)}, not an object with {part!r}"
            here, exists = field_schema(here, part)
            if not exists:
                known = sorted(here_props(schema, path[:depth]))
                listing = f" (it has: {', '.join(known)})" if known else ""
                return None, f"no field {part!r}{' in ' + where if where else ''}{listing}"
        else:
            if kinds is not None and "array" not in kinds:
                return None, f"{where or 'it'} is {shown(kinds)}, not an array"
            items = here.get("items")
            here = items if isinstance(items, Mapping) else None
    return here, None


def here_props(schema: Schema | None, path: Sequence[PathPart]) -> list[str]:
    """The declared field names of the object at `path` (for "it has: ..." hints)."""
    here = schema
    for part in path:
        if here is None:
            return []
        if isinstance(part, str):
            here, _ = field_schema(here, part)
        else:
            items = here.get("items")
            here = items if isinstance(items, Mapping) else None
    properties = here.get("properties") if here is not None else None
    return list(properties) if isinstance(properties, Mapping) else []


__all__ = ["Schema", "field_schema", "fits", "json_type", "schema_at", "shown", "types"]
