"""The workspace lock file (`flowforge.lock`): which version and bytes of each connector
this workspace installed. JSON, written atomically under an advisory lock, so two
concurrent installs do not lose each other's entries."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from flowforge.runtime.files import write_atomically

LOCK_FILE: Final = "flowforge.lock"
_FORMAT: Final = 1


class LockFileError(Exception):
    """A lock file that cannot be read; names the file and the problem."""


@dataclass(frozen=True, slots=True)
class LockEntry:
    name: str
    version: str
    package_sha256: str
    component_sha256: str


def _read(path: Path) -> dict[str, LockEntry]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LockFileError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != _FORMAT:
        raise LockFileError(f'{path}: expected {{"version": 1, "packages": {{...}}}}')
    packages = doc.get("packages")
    if not isinstance(packages, dict):
        raise LockFileError(f"{path}: packages is not an object")
    entries: dict[str, LockEntry] = {}
    for name, item in packages.items():
        try:
            entries[name] = LockEntry(
                name, str(item["version"]), str(item["package_sha256"]),
                str(item["component_sha256"]),
            )  # fmt: skip
        except (KeyError, TypeError):
            raise LockFileError(
                f"{path}: packages[{name!r}] needs version, package_sha256, component_sha256"
            ) from None
    return entries


def _write(path: Path, entries: dict[str, LockEntry]) -> None:
    doc = {
        "version": _FORMAT,
        "packages": {
            name: {k: v for k, v in asdict(e).items() if k != "name"}
            for name, e in sorted(entries.items())
        },
    }
    write_atomically(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))


class LockFile:
    """The lock file of one workspace."""

    def __init__(self, workspace: Path) -> None:
        self.path = workspace / LOCK_FILE

    def entries(self) -> dict[str, LockEntry]:
        return _read(self.path)

    def get(self, name: str) -> LockEntry | None:
        return self.entries().get(name)

    @contextmanager
    def editing(self) -> Iterator[dict[str, LockEntry]]:
        """The entries, held under an exclusive lock and written back on a clean exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lck"), "a+b") as guard:
            fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
            try:
                entries = _read(self.path)
                before = dict(entries)
                yield entries
                if entries != before:
                    _write(self.path, entries)
            finally:
                fcntl.flock(guard.fileno(), fcntl.LOCK_UN)


__all__ = ["LOCK_FILE", "LockEntry", "LockFile", "LockFileError"]
