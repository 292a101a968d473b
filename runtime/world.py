"""What a connector component may import and must export: the `flowforge:connector` world.

Types are compared by rendering them as WIT-like text, so an error can show the expected
and the found signature side by side.
"""

from __future__ import annotations

from typing import Final

import wasmtime
from wasmtime.component import (
    ComponentInstanceType,
    ComponentType,
    EnumType,
    FuncType,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    TupleType,
    ValType,
)

PACKAGE: Final = "flowforge:connector"
VERSION: Final = "0.1.0"
HOST_INTERFACE: Final = f"{PACKAGE}/host@{VERSION}"
TYPES_INTERFACE: Final = f"{PACKAGE}/types@{VERSION}"
HANDLER_INTERFACE: Final = f"{PACKAGE}/handler@{VERSION}"

_FAILURE: Final = (
    "record{kind: enum{invalid-input, invalid-config, unauthorized, not-found, rate-limited, "
    "unavailable, internal}, message: string, retry-after-ms: option<u32>}"
)
_HEADERS: Final = "list<tuple<string, string>>"
_REQUEST: Final = (
    f"record{{method: string, url: string, headers: {_HEADERS}, body: list<u8>, "
    "timeout-ms: option<u32>}"
)
_RESPONSE: Final = f"record{{status: u16, headers: {_HEADERS}, body: list<u8>}}"

INVOKE_SIGNATURE: Final = f"func(config: string, input: string) -> result<string, {_FAILURE}>"
HOST_TYPES: Final = frozenset({"log-level", "http-request", "http-response"})
HOST_SIGNATURES: Final = {
    "log": "func(level: enum{trace, debug, info, warn, error}, message: string)",
    "secret": "func(name: string) -> result<string, string>",
    "fetch": f"func(request: {_REQUEST}) -> result<{_RESPONSE}, string>",
}


class WorldError(Exception):
    """The component does not fit the `flowforge:connector` world; says which part and why."""


def describe(ty: ValType) -> str:
    """Render a value type as WIT-like text (structure only, names of types dropped)."""
    if isinstance(ty, RecordType):
        fields = ", ".join(f"{name}: {describe(field)}" for name, field in ty.fields)
        return f"record{{{fields}}}"
    if isinstance(ty, EnumType):
        return f"enum{{{', '.join(ty.names)}}}"
    if isinstance(ty, OptionType):
        return f"option<{describe(ty.payload)}>"
    if isinstance(ty, ResultType):
        ok = "_" if ty.ok is None else describe(ty.ok)
        err = "_" if ty.err is None else describe(ty.err)
        return f"result<{ok}, {err}>"
    if isinstance(ty, ListType):
        return f"list<{describe(ty.element)}>"
    if isinstance(ty, TupleType):
        return f"tuple<{', '.join(describe(e) for e in ty.elements)}>"
    return type(ty).__name__.lower()


def describe_func(ty: FuncType) -> str:
    params = ", ".join(f"{name}: {describe(param)}" for name, param in ty.params)
    result = ty.result
    return f"func({params})" + ("" if result is None else f" -> {describe(result)}")


def is_wasi_p2(name: str) -> bool:
    """WASI 0.2 interfaces are linked (with nothing granted); wasi:http never is."""
    return name.startswith("wasi:") and "@0.2." in name and not name.startswith("wasi:http/")


def check_world(component_type: ComponentType, engine: wasmtime.Engine) -> bool:
    """Check imports and exports; returns whether the component imports WASI.

    Raises WorldError naming the offending import or the missing/mistyped export.
    """
    imports_wasi = False
    for name, extern in component_type.imports(engine).items():
        if name == TYPES_INTERFACE:
            continue
        if name == HOST_INTERFACE:
            _check_host_import(extern.ty, engine)
            continue
        if is_wasi_p2(name):
            imports_wasi = True
            continue
        if name.startswith("wasi:http/"):
            raise WorldError(
                f"import {name!r} is not allowed: wasi:http is never linked; "
                "make HTTP requests through flowforge:connector/host.fetch"
            )
        raise WorldError(
            f"import {name!r} is outside WASI 0.2 and the {PACKAGE}@{VERSION} world; "
            "a connector may import only flowforge:connector/host and wasi:*@0.2.x"
        )
    _check_handler_export(component_type, engine)
    return imports_wasi


def _check_host_import(item: object, engine: wasmtime.Engine) -> None:
    if not isinstance(item, ComponentInstanceType):
        raise WorldError(f"import {HOST_INTERFACE!r} must be an instance")
    for func_name, extern in item.exports(engine).items():
        if func_name in HOST_TYPES and not isinstance(extern.ty, FuncType):
            continue  # the types the host interface `use`s, re-exported by name
        expected = HOST_SIGNATURES.get(func_name)
        if expected is None:
            raise WorldError(f"import {HOST_INTERFACE}#{func_name} does not exist in the world")
        found = extern.ty
        if not isinstance(found, FuncType) or describe_func(found) != expected:
            shown = describe_func(found) if isinstance(found, FuncType) else type(found).__name__
            raise WorldError(
                f"import {HOST_INTERFACE}#{func_name} has the wrong type: "
                f"expected {expected}, found {shown}"
            )


def _check_handler_export(component_type: ComponentType, engine: wasmtime.Engine) -> None:
    exports = component_type.exports(engine)
    handler = exports.get(HANDLER_INTERFACE)
    if handler is None:
        found = ", ".join(sorted(exports)) or "nothing"
        raise WorldError(
            f"missing export {HANDLER_INTERFACE!r} (the component exports {found}); "
            "build it against the world flowforge:connector/connector@0.1.0"
        )
    instance = handler.ty
    if not isinstance(instance, ComponentInstanceType):
        raise WorldError(f"export {HANDLER_INTERFACE!r} must be an instance")
    invoke = instance.exports(engine).get("invoke")
    if invoke is None:
        raise WorldError(f"missing export {HANDLER_INTERFACE}#invoke")
    invoke_type = invoke.ty
    if not isinstance(invoke_type, FuncType) or describe_func(invoke_type) != INVOKE_SIGNATURE:
        shown = (
            describe_func(invoke_type)
            if isinstance(invoke_type, FuncType)
            else type(invoke_type).__name__
        )
        raise WorldError(
            f"export {HANDLER_INTERFACE}#invoke has the wrong type: "
            f"expected {INVOKE_SIGNATURE}, found {shown}"
        )
