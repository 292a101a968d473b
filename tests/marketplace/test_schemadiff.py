"""Breaking changes between two versions of a port's schema."""

from __future__ import annotations

from typing import Any

from flowforge.marketplace.schemadiff import breaking_changes


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741


def changes(old: dict[str, Any], new: dict[str, Any], port: str = "input") -> list[str]:
    return [f"{c.change} {c.path}" for c in breaking_changes(old, new, port)]  # type: ignore[arg-type]


def test_removed_property_is_breaking_in_every_port() -> None:
    for port in ("input", "output", "config"):
        assert changes(obj(a=S, b=S), obj(a=S), port) == ["removed $.b"]


def test_retyped_property_is_breaking_but_widening_is_not() -> None:
    assert changes(obj(a=S), obj(a=I)) == ["retyped $.a"]
    assert changes(obj(a=I), obj(a={"type": "number"})) == []
    assert changes(obj(a=S), obj(a={"type": ["string", "null"]})) == []
    assert changes(obj(a={"type": ["string", "null"]}), obj(a=S)) == ["retyped $.a"]
    assert changes(obj(a={"enum": ["x", "y"]}), obj(a=I)) == ["retyped $.a"]


def test_new_required_input_is_breaking_new_required_output_is_not() -> None:
    assert changes(obj(a=S), obj(["b"], a=S, b=S)) == ["newly-required $.b"]
    assert changes(obj(a=S), obj(["a"], a=S), "output") == []
    assert changes(obj(a=S), obj(a=S, b=S)) == []  # a new optional input is fine


def test_nested_objects_and_arrays_are_followed() -> None:
    old = obj(items={"type": "array", "items": obj(id=S, name=S)})
    new = obj(items={"type": "array", "items": obj(id=I)})
    assert changes(old, new) == ["retyped $.items[*].id", "removed $.items[*].name"]


def test_untyped_schemas_admit_everything() -> None:
    assert changes({}, {}) == []
    assert changes(obj(a=S), {}) == ["removed $.a"]
    assert changes({}, obj(a=S)) == ["retyped $"]  # it accepted any value, now objects only
