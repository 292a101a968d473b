"""Signing keys: Ed25519 key pairs kept in `<config>/keys/`.

`NAME.key` holds the private key as PKCS#8 PEM (mode 0600, encrypted with the passphrase
when one is given); `NAME.pub` holds the public key line `ed25519 <base64> <fingerprint>`
that `flowforge trust add` accepts. Existing keys are never overwritten: a lost or
replaced private key would orphan every package it signed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.runtime.signing import (
    KeyFormatError,
    fingerprint,
    parse_public_key,
    public_key_line,
    raw_public_key,
)

from .workspace import config_dir

PASSPHRASE_ENV: Final = "FLOWFORGE_KEY_PASSPHRASE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class KeyStoreError(Exception):
    """A key that cannot be created, found or opened; the message says what to do."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    fingerprint: str
    public_key: bytes
    created: datetime
    encrypted: bool
    path: Path

    @property
    def public_key_line(self) -> str:
        return public_key_line(self.public_key)


def keys_dir(config: Path | None = None) -> Path:
    return (config or config_dir()) / "keys"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise KeyStoreError(
            f"key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64), e.g. release"
        )
    return name


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode`; O_EXCL makes "never overwrite" hold even against a race."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have narrowed or widened nothing else
        handle.write(data)


def new_key(name: str, passphrase: bytes | None = None, directory: Path | None = None) -> KeyInfo:
    """Generate a key pair; refuses to overwrite an existing key of that name."""
    _check_name(name)
    folder = directory or keys_dir()
    key_path, pub_path = folder / f"{name}.key", folder / f"{name}.pub"
    if key_path.exists() or pub_path.exists():
        raise KeyStoreError(
            f"key {name!r} already exists in {folder}; choose another name "
            "(an existing key is never overwritten)"
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        _write_new(key_path, pem, 0o600)
    except FileExistsError:
        raise KeyStoreError(f"key {name!r} already exists in {folder}") from None
    raw = raw_public_key(private)
    _write_new(pub_path, (public_key_line(raw) + "\n").encode("ascii"), 0o644)
    return _info(name, folder)


def _info(name: str, folder: Path) -> KeyInfo:
    key_path, pub_path = folder / f"{name}.key", folder / f"{name}.pub"
    try:
        raw = parse_public_key(pub_path.read_text(encoding="ascii"))
        head = key_path.read_bytes()[: len(_ENCRYPTED_PEM)]
        created = datetime.fromtimestamp(key_path.stat().st_mtime, UTC)
    except FileNotFoundError as exc:
        raise KeyStoreError(
            f"key {name!r}: {exc.filename} is missing (`flowforge keys list` shows the keys)"
        ) from None
    except (KeyFormatError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"key {name!r}: {pub_path} is not a public key line: {exc}") from None
    return KeyInfo(name, fingerprint(raw), raw, created, head == _ENCRYPTED_PEM, key_path)


def get_key(name: str, directory: Path | None = None) -> KeyInfo:
    return _info(_check_name(name), directory or keys_dir())


def list_keys(directory: Path | None = None) -> list[KeyInfo]:
    folder = directory or keys_dir()
    if not folder.is_dir():
        return []
    return [_info(path.stem, folder) for path in sorted(folder.glob("*.key"))]


def load_private_key(
    name: str, passphrase: bytes | None = None, directory: Path | None = None
) -> Ed25519PrivateKey:
    """The private key, decrypted with `passphrase` when it is encrypted."""
    info = get_key(name, directory)
    pem = info.path.read_bytes()
    if info.encrypted and not passphrase:
        raise KeyStoreError(
            f"key {name!r} is encrypted; give its passphrase with --passphrase-stdin "
            f"or ${PASSPHRASE_ENV}"
        )
    try:
        private = serialization.load_pem_private_key(
            pem, password=passphrase if info.encrypted else None
        )
    except (ValueError, TypeError):
        if info.encrypted:
            raise KeyStoreError(f"wrong passphrase for key {name!r}") from None
        raise KeyStoreError(f"key {name!r}: {info.path} is not a PKCS#8 PEM key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyStoreError(f"key {name!r}: {info.path} is not an Ed25519 key")
    if raw_public_key(private) != info.public_key:
        raise KeyStoreError(f"key {name!r}: {info.path} and its .pub file hold different keys")
    return private
