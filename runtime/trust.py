"""The workspace trust store: which Ed25519 keys may sign packages for which publisher.

One JSON file per workspace (the control plane decides where; the runtime is handed the
path). Each entry trusts one key for one publisher. Revocation is per key and permanent: a
revoked key stops verifying every package it signed, including ones that verified before,
and cannot be trusted again (a compromised key stays compromised; make a new one).

The file is re-read whenever it changes on disk, so a long-lived worker sees a
`flowforge trust revoke` run from another process at its next verification. Writes are
atomic (temporary file + rename, mode 0600) under an advisory lock, so two concurrent
`trust add` commands do not lose each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .files import write_atomically
from .signing import KeyFormatError, decode_public_key, encode_public_key, fingerprint

TRUST_FILE: Final = "trust.json"
_FORMAT_VERSION: Final = 1
_PUBLISHER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class TrustStoreError(Exception):
    """The trust store cannot be read or the change asked for cannot be made."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One key trusted for one publisher."""

    fingerprint: str
    public_key: bytes
    publisher: str
    added_at: str
    revoked_at: str | None = None
    comment: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["public_key"] = encode_public_key(self.public_key)
        return doc


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_publisher(publisher: str) -> str:
    if not _PUBLISHER.match(publisher):
        raise TrustStoreError(
            f"publisher {publisher!r}: use the part before '/' in a connector name: "
            "lowercase letters, digits and '-', e.g. acme"
        )
    return publisher


def _entry(path: Path, index: int, doc: Any) -> TrustedKey:
    where = f"{path}: keys[{index}]"
    if not isinstance(doc, dict):
        raise TrustStoreError(f"{where}: expected an object")
    try:
        key = TrustedKey(
            fingerprint=str(doc["fingerprint"]),
            public_key=decode_public_key(str(doc["public_key"])),
            publisher=str(doc["publisher"]),
            added_at=str(doc["added_at"]),
            revoked_at=None if doc.get("revoked_at") is None else str(doc["revoked_at"]),
            comment=str(doc.get("comment", "")),
        )
    except KeyError as exc:
        raise TrustStoreError(f"{where}: missing field {exc.args[0]!r}") from None
    except KeyFormatError as exc:
        raise TrustStoreError(f"{where}: public_key: {exc}") from None
    # An entry whose fingerprint names another key would let a package signed by that
    # other key pass as trusted, so the pair is checked on every read.
    if fingerprint(key.public_key) != key.fingerprint:
        raise TrustStoreError(
            f"{where}: fingerprint {key.fingerprint} does not match its public key "
            f"({fingerprint(key.public_key)}); the file was edited by hand"
        )
    return key


class TrustStore:
    """The trusted keys of one workspace, backed by `path` (created on first change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._keys: list[TrustedKey] = []
        self._refresh()

    def _read(self) -> list[TrustedKey]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TrustStoreError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise TrustStoreError(f"{self.path}: not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise TrustStoreError(f'{self.path}: expected {{"version": 1, "keys": [...]}}')
        if doc.get("version") != _FORMAT_VERSION:
            raise TrustStoreError(f"{self.path}: unsupported version {doc.get('version')!r}")
        return [_entry(self.path, i, item) for i, item in enumerate(doc["keys"])]

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int, int] | None = (
                st.st_ino,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_size,
            )
        except FileNotFoundError:
            stamp = None
        if stamp is None or stamp != self._stamp:
            self._keys = self._read()
            self._stamp = stamp

    def _write(self, keys: list[TrustedKey]) -> None:
        doc = {"version": _FORMAT_VERSION, "keys": [k.to_json() for k in keys]}
        data = json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        write_atomically(self.path, data, mode=0o600)
        self._stamp = None
        self._refresh()

    @contextmanager
    def _locked(self) -> Iterator[list[TrustedKey]]:
        """The current entries, read under an exclusive lock held while they are rewritten."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a+b") as handle:
            os.fchmod(handle.fileno(), 0o600)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                self._stamp = None
                self._refresh()
                yield list(self._keys)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def entries(self) -> list[TrustedKey]:
        self._refresh()
        return list(self._keys)

    def lookup(self, key_fingerprint: str) -> list[TrustedKey]:
        """Every entry for this key (one per publisher it is trusted for)."""
        return [k for k in self.entries() if k.fingerprint == key_fingerprint]

    def revoked(self, key_fingerprint: str) -> TrustedKey | None:
        """The revoked entry for this key, if the key was revoked."""
        return next((k for k in self.lookup(key_fingerprint) if k.revoked), None)

    def trusted_for(self, key_fingerprint: str, publisher: str) -> TrustedKey | None:
        """The entry that lets this key sign for `publisher`, unless the key is revoked."""
        if self.revoked(key_fingerprint) is not None:
            return None
        return next((k for k in self.lookup(key_fingerprint) if k.publisher == publisher), None)

    def add(self, public_key: bytes, publisher: str, comment: str = "") -> tuple[TrustedKey, bool]:
        """Trust `public_key` for `publisher`; returns the entry and whether it is new.

        Adding the same key for the same publisher again changes nothing.
        """
        check_publisher(publisher)
        key_fingerprint = fingerprint(public_key)
        with self._locked() as keys:
            mine = [k for k in keys if k.fingerprint == key_fingerprint]
            gone = next((k for k in mine if k.revoked), None)
            if gone is not None:
                raise TrustStoreError(
                    f"key {key_fingerprint} was revoked at {gone.revoked_at}; a revoked key "
                    "cannot be trusted again (the publisher needs a new key)"
                )
            same = next((k for k in mine if k.publisher == publisher), None)
            if same is not None:
                return same, False
            entry = TrustedKey(key_fingerprint, public_key, publisher, _now(), None, comment)
            self._write([*keys, entry])
            return entry, True

    def revoke(self, key_fingerprint: str) -> list[TrustedKey]:
        """Revoke a key for every publisher; revoking it again changes nothing."""
        with self._locked() as keys:
            if not any(k.fingerprint == key_fingerprint for k in keys):
                raise TrustStoreError(
                    f"key {key_fingerprint} is not in the trust store {self.path} "
                    "(flowforge trust list shows the keys it holds)"
                )
            when = _now()
            updated = [
                replace(k, revoked_at=when)
                if k.fingerprint == key_fingerprint and not k.revoked
                else k
                for k in keys
            ]
            if updated != keys:
                self._write(updated)
            return [k for k in updated if k.fingerprint == key_fingerprint]
