"""The on-disk cache of compiled components.

Compiling a large component takes tens of seconds; mapping a compiled artefact back in
takes milliseconds. Deserializing trusts the bytes (they are machine code), so an artefact
is loaded only when its recorded digest matches; anything corrupt, truncated or made by
another engine is compiled again and overwritten.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from .engine import SETTINGS
from .files import write_atomically


def cache_root() -> Path:
    """Where every FlowForge cache lives: `$FLOWFORGE_CACHE_DIR`, else
    `$XDG_CACHE_HOME/flowforge`, else `~/.cache/flowforge`."""
    root = os.environ.get("FLOWFORGE_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "flowforge"


def default_cache_dir() -> Path:
    """The compiled-component cache: `<cache root>/compiled`."""
    return cache_root() / "compiled"


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class CompileCache:
    """Compiled artefacts keyed by component sha256, wasmtime version and engine settings."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_cache_dir()

    def key(self, component_sha256: str) -> str:
        settings = hashlib.sha256(SETTINGS.fingerprint().encode()).hexdigest()[:16]
        return f"{component_sha256}-{settings}"

    def artefact_path(self, component_sha256: str) -> Path:
        return self.directory / f"{self.key(component_sha256)}.cwasm"

    def load(self, engine: wasmtime.Engine, wasm: bytes, component_sha256: str) -> Component:
        """The compiled component, from the cache when a verified artefact is there.

        Raises `wasmtime.WasmtimeError` only when `wasm` itself does not compile.
        """
        artefact = self.artefact_path(component_sha256)
        digest_file = artefact.with_suffix(".sha256")
        if self._verified(artefact, digest_file):
            try:
                return Component.deserialize_file(engine, str(artefact))
            except wasmtime.WasmtimeError:
                pass  # made by another engine build: fall through and recompile
        component = Component(engine, wasm)
        self._store(artefact, digest_file, bytes(component.serialize()))
        return component

    @staticmethod
    def _verified(artefact: Path, digest_file: Path) -> bool:
        try:
            return digest_file.read_text().strip() == _file_digest(artefact)
        except OSError:
            return False

    def _store(self, artefact: Path, digest_file: Path, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # A cache only costs speed when lost, so no fsync; 0600: it is machine code.
            write_atomically(artefact, data, mode=0o600, durable=False)
            digest = hashlib.sha256(data).hexdigest().encode()
            write_atomically(digest_file, digest, mode=0o600, durable=False)
        except OSError:
            # A read-only or full cache only costs speed; the compiled component is valid.
            return
