"""Bundles: the registry's packages in one file, for sites with no network path to it.

A bundle is an uncompressed ustar archive:

    bundle.json                  {"format": "flowforge-bundle/1", "created_at": ...,
                                  "packages": [{"name", "version", "package_sha256",
                                                "yanked", "file"}, ...]}
    packages/<sha256>.ffpkg      each package file, named by its sha256

It carries no keys: the importing site decides whom it trusts (its workspace trust store),
and every package is verified against that before anything is imported. A bundle is
hostile input: it is read entry by entry with the same refusals as a package (links,
devices, directories, traversal, unexpected or duplicate names, entries over their cap).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

from flowforge.runtime.files import atomic_writer
from flowforge.runtime.package import MAX_PACKAGE_BYTES

from .errors import BundleError

FORMAT: Final = "flowforge-bundle/1"
INDEX: Final = "bundle.json"
_INDEX_CAP: Final = 16 << 20
_MAX_ENTRIES: Final = 100_000
_PACKAGE_NAME: Final = re.compile(r"^packages/([0-9a-f]{64})\.ffpkg$")


@dataclass(frozen=True, slots=True)
class BundleEntry:
    name: str
    version: str
    package_sha256: str
    yanked: bool
    data: bytes


def write_bundle(path: Path, entries: list[BundleEntry]) -> None:
    """Write the bundle atomically (a temporary file renamed into place)."""
    index = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "packages": [
            {
                "name": e.name,
                "version": e.version,
                "package_sha256": e.package_sha256,
                "yanked": e.yanked,
                "file": f"packages/{e.package_sha256}.ffpkg",
            }
            for e in entries
        ],
    }
    with (
        atomic_writer(path) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as archive,
    ):
        _add(archive, INDEX, json.dumps(index, indent=2).encode("utf-8"))
        written: set[str] = set()
        for e in entries:
            if e.package_sha256 not in written:
                written.add(e.package_sha256)
                _add(archive, f"packages/{e.package_sha256}.ffpkg", e.data)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def _check(label: str, info: tarfile.TarInfo, seen: dict[str, bytes]) -> None:
    name = info.name
    if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts or "\\" in name:
        raise BundleError(f"{label}: entry {name!r} has a path that leaves the bundle")
    if not info.isfile():
        raise BundleError(f"{label}: entry {name!r} is not a regular file (links are refused)")
    if name != INDEX and not _PACKAGE_NAME.match(name):
        raise BundleError(
            f"{label}: unexpected entry {name!r}; a bundle holds {INDEX} and "
            "packages/<sha256>.ffpkg"
        )
    if name in seen:
        raise BundleError(f"{label}: duplicate entry {name!r}")
    cap = _INDEX_CAP if name == INDEX else MAX_PACKAGE_BYTES
    if info.size > cap:
        raise BundleError(f"{label}: entry {name!r} is {info.size} bytes, over its cap of {cap}")
    if len(seen) >= _MAX_ENTRIES:
        raise BundleError(f"{label}: more than {_MAX_ENTRIES} entries")


def _members(path: Path) -> dict[str, bytes]:
    label = str(path)
    seen: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:") as archive:
            while (info := archive.next()) is not None:
                _check(label, info, seen)
                handle = archive.extractfile(info)
                body = handle.read(info.size) if handle is not None else b""
                if len(body) != info.size:
                    raise BundleError(f"{label}: entry {info.name!r} is truncated")
                seen[info.name] = body
    except FileNotFoundError:
        raise BundleError(f"{label}: no such file") from None
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{label}: not a readable bundle ({exc})") from None
    return seen


def _index_entry(label: str, i: int, doc: Any, files: dict[str, bytes]) -> BundleEntry:
    where = f"{label}: {INDEX} packages[{i}]"
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: expected an object")
    try:
        name, version, digest = str(doc["name"]), str(doc["version"]), str(doc["package_sha256"])
        file = str(doc["file"])
    except KeyError as exc:
        raise BundleError(f"{where}: missing field {exc.args[0]!r}") from None
    if file != f"packages/{digest}.ffpkg" or file not in files:
        raise BundleError(f"{where}: {file!r} is not in the bundle under its digest")
    data = files[file]
    if hashlib.sha256(data).hexdigest() != digest:
        raise BundleError(f"{where}: {file} does not match its sha256 (the bundle was changed)")
    return BundleEntry(name, version, digest, bool(doc.get("yanked", False)), data)


def read_bundle(path: Path) -> list[BundleEntry]:
    """Every package of the bundle, each checked against its recorded digest."""
    label = str(path)
    files = _members(path)
    if INDEX not in files:
        raise BundleError(f"{label}: no {INDEX}; not a FlowForge bundle")
    try:
        index = json.loads(files[INDEX])
    except ValueError:
        raise BundleError(f"{label}: {INDEX} is not JSON") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise BundleError(f"{label}: {INDEX} is not a {FORMAT} index")
    packages = index.get("packages")
    if not isinstance(packages, list):
        raise BundleError(f"{label}: {INDEX} has no packages list")
    return [_index_entry(label, i, doc, files) for i, doc in enumerate(packages)]


__all__ = ["FORMAT", "BundleEntry", "read_bundle", "write_bundle"]
