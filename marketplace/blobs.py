"""The content-addressed blob store: package files kept by their sha256.

`<root>/sha256/ab/abcdef...`: written through a temporary file and renamed into place
(a reader never sees half a blob), and checked against its name on every read (a blob
changed on disk is reported, never served).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

from flowforge.runtime.files import write_atomically

_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A blob that is missing or whose bytes no longer match its digest."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs under `root`; safe for concurrent writers (same digest, same bytes)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise BlobError(f"{digest!r} is not a hex sha256 digest")
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store `data`; returns its digest. Storing an existing blob changes nothing."""
        digest = sha256(data)
        target = self.path(digest)
        if target.is_file() and self._intact(target, digest):
            return digest
        write_atomically(target, data, mode=0o444)
        return digest

    def get(self, digest: str) -> bytes:
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is missing from {self.root}") from None
        if sha256(data) != digest:
            raise BlobError(
                f"blob {target} no longer matches its digest (it was changed on disk); "
                "restore it from a bundle or republish"
            )
        return data

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        """Every stored digest (temporary files excluded)."""
        folder = self.root / "sha256"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.glob("*/*") if _DIGEST.match(p.name))

    @staticmethod
    def _intact(path: Path, digest: str) -> bool:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest() == digest


__all__ = ["BlobError", "BlobStore", "sha256"]
