"""The on-disk cache of compiled components.

Compiling a large component takes tens of seconds; mapping a compiled artefact back in
takes milliseconds. Deserializing trusts the bytes (they are machine code), so an artefact
is loaded only when its recorded digest matches; anything corrupt, truncated or made by
another engine is compiled again and overwritten.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from .engine import SETTINGS


def default_cache_dir() -> Path:
    """`$FLOWFORGE_CACHE_DIR/compiled`, else `$XDG_CACHE_HOME/flowforge/compiled`."""
    root = os.environ.get("FLOWFORGE_CACHE_DIR")
    if root:
        return Path(root) / "compiled"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "flowforge" / "compiled"


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            _write_atomically(artefact, data)
            _write_atomically(digest_file, hashlib.sha256(data).hexdigest().encode())
        except OSError:
            # A read-only or full cache only costs speed; the compiled component is valid.
            return
