"""A content-addressed store of built components, keyed by everything that shapes the build.

The key covers the connector's sources, the WIT package, the language and the toolchain
versions, so an edit to any of them builds afresh and nothing else does. Artefacts appear
under their final name only by an atomic rename, so a build killed half-way leaves nothing
that a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from flowforge.runtime.cache import cache_root

# Raise this when the layout of the key or of the build itself changes, so that artefacts
# made by an older builder stop matching.
_KEY_SCHEMA = b"flowforge-build/1"

# Build debris and editor state that a source tree may hold; none of it is an input.
_IGNORED_DIRS = frozenset(
    {"__pycache__", ".zig-cache", "zig-cache", "zig-out", ".git", "dist", "node_modules"}
)
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".wasm", ".swp", "~")


def default_cache_dir() -> Path:
    """The build cache: `<cache root>/builds` (see `flowforge.runtime.cache.cache_root`)."""
    return cache_root() / "builds"


def source_files(root: Path, pattern: str = "*") -> list[Path]:
    """The files under `root` matching `pattern` that are inputs to a build, as sorted
    relative paths."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _IGNORED_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.endswith(_IGNORED_SUFFIXES):
                continue
            found.append((Path(dirpath) / name).relative_to(root))
    return sorted((p for p in found if p.match(pattern)), key=lambda p: p.as_posix())


def tree_inputs(label: str, root: Path, pattern: str = "*") -> list[tuple[str, Path]]:
    """`(name, file)` pairs for `build_key`: each input file of `root`, named under `label`
    so that a file moving from one tree to another changes the key."""
    return [(f"{label}/{rel.as_posix()}", root / rel) for rel in source_files(root, pattern)]


def build_key(
    *,
    language: str,
    tool_versions: Iterable[str],
    inputs: Iterable[tuple[str, Path]],
) -> str:
    """sha256 over the language, the toolchain versions and every input file (its name
    and its bytes), independent of the order they are given in."""
    digest = hashlib.sha256(_KEY_SCHEMA + b"\0")
    _feed(digest, b"language", language.encode())
    for version in sorted(tool_versions):
        _feed(digest, b"tool", version.encode())
    for name, path in sorted(inputs):
        _feed(digest, name.encode(), path.read_bytes())
    return digest.hexdigest()


def _feed(digest: hashlib._Hash, name: bytes, data: bytes) -> None:
    # Length prefixes make the encoding unambiguous: no two different inputs hash the same
    # stream by shifting bytes between a name and its contents.
    for part in (name, data):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)


class BuildCache:
    """Built components stored as `<cache_dir>/<key>.wasm`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}.wasm"

    def lookup(self, key: str) -> Path | None:
        path = self.path_for(key)
        return path if path.is_file() else None

    def store(self, key: str, built: Path) -> Path:
        """Move `built`, made in one of this cache's `work_dir()`s, in under `key`.

        The work folder is on the same filesystem, so the rename is atomic: readers see
        either no artefact or the whole of it.
        """
        with built.open("rb+") as out:
            # The rename is only as durable as the bytes behind it.
            os.fsync(out.fileno())
        final = self.path_for(key)
        os.replace(built, final)
        return final

    def work_dir(self) -> tempfile.TemporaryDirectory[str]:
        """A scratch folder for one build, inside the cache folder (same filesystem).

        Its dot-name never matches a key, so the debris of a killed build is never
        mistaken for an artefact.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=self.directory, prefix=".work-")


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
