"""Turning bytes into a checked, compiled component the sandbox may run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from ._capi import InvokeExport
from .cache import CompileCache
from .world import WorldError, check_world

_MAGIC = b"\0asm"
_COMPONENT_LAYER = b"\x0d\x00\x01\x00"
_CORE_VERSION = b"\x01\x00\x00\x00"


class LoadError(Exception):
    """The file is not a component this runtime will run; the message says why and what to do."""


@dataclass(frozen=True, slots=True, eq=False)
class LoadedComponent:
    """A compiled component that passed the world check."""

    sha256: str
    component: Component
    invoke: InvokeExport
    imports_wasi: bool
    size_bytes: int


def read_source(source: Path | bytes) -> bytes:
    """The component's bytes from a path or as given; `.wat` files are component text."""
    if isinstance(source, bytes):
        return source
    try:
        return source.read_bytes()
    except FileNotFoundError:
        raise LoadError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise LoadError(f"{source}: is a directory, expected a .wasm component") from None
    except OSError as exc:
        raise LoadError(f"{source}: cannot read: {exc.strerror}") from None


def _check_header(data: bytes, name: str) -> str | bytes:
    """Binary components pass through; text is decoded for wasmtime's WAT parser."""
    if data.startswith(_MAGIC):
        layer = data[4:8]
        if layer == _COMPONENT_LAYER:
            return data
        if layer == _CORE_VERSION:
            raise LoadError(
                f"{name}: is a core WebAssembly module, not a component; "
                "wrap it with `wasm-tools component new` against the flowforge:connector world"
            )
        raise LoadError(f"{name}: unsupported WebAssembly version/layer {layer.hex()}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LoadError(f"{name}: not a WebAssembly component (no \\0asm header)") from None
    if "(component" not in text and "(module" in text:
        raise LoadError(
            f"{name}: is a core WebAssembly module (text), not a component; "
            "write a (component ...) around it"
        )
    if "(component" not in text:
        raise LoadError(f"{name}: not a WebAssembly component (no \\0asm header, no WAT text)")
    return text


def load_component(
    engine: wasmtime.Engine, data: bytes, cache: CompileCache, name: str = "component"
) -> LoadedComponent:
    """Compile (or map from the cache) and check against the world; raises LoadError."""
    wasm = _check_header(data, name)
    digest = hashlib.sha256(data).hexdigest()
    try:
        if isinstance(wasm, str):
            component = Component(engine, wasm)  # text is cheap to compile; not cached
        else:
            component = cache.load(engine, wasm, digest)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise LoadError(f"{name}: does not compile: {first}") from None
    try:
        imports_wasi = check_world(component.type, engine)
    except WorldError as exc:
        raise LoadError(f"{name}: {exc}") from None
    invoke = InvokeExport.of(component)
    if invoke is None:  # check_world found it in the type; this is the runtime index
        raise LoadError(f"{name}: missing export flowforge:connector/handler@0.1.0#invoke")
    return LoadedComponent(digest, component, invoke, imports_wasi, len(data))
