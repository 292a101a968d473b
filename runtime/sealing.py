"""Sealed boxes: secret values sealed by the control plane to one worker pool's public key,
so they never travel in clear on the bus and only that pool's workers can open them.

X25519 with a fresh ephemeral key per box, HKDF-SHA256 over the shared secret (bound to
both public keys) to an AES-256-GCM key, and the values as canonical JSON. The text form is
`ffseal1.` + base64url(ephemeral public (32) | nonce (12) | ciphertext+tag).

A pool's key pair lives in a folder the caller names (the control plane's configuration
folder): `<pool>.key` (the raw private key, base64, mode 0600) and `<pool>.pub`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .canonical import canonical_json

PREFIX: Final = "ffseal1."
_INFO: Final = b"flowforge sealed secrets v1"
_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SealError(Exception):
    """A sealed box that is malformed, was sealed to another key, or was altered; or a
    pool key that cannot be read. Never carries a secret value."""


@dataclass(frozen=True, slots=True)
class PoolKeypair:
    private: bytes
    public: bytes

    def __repr__(self) -> str:
        return f"PoolKeypair(public={base64.b64encode(self.public).decode()})"


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO)
    return hkdf.derive(shared)


def seal(values: Mapping[str, str], pool_public: bytes) -> str:
    """Seal `values` (secret name -> value) to the pool whose raw public key is given."""
    try:
        recipient = X25519PublicKey.from_public_bytes(pool_public)
    except ValueError as exc:
        raise SealError("a pool public key is 32 raw bytes") from exc
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral)
    key = _box_key(ephemeral.exchange(recipient), ephemeral_public, pool_public)
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, canonical_json(dict(values)), None)
    return PREFIX + base64.urlsafe_b64encode(ephemeral_public + nonce + ciphertext).decode()


def open(sealed: str, pool_private: bytes) -> dict[str, str]:
    """The values in a box sealed to this pool's key pair."""
    if not sealed.startswith(PREFIX):
        raise SealError(f"not a sealed box (it does not start with {PREFIX!r})")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :].encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SealError("a sealed box that is not base64url") from exc
    if len(raw) < 32 + 12 + 16:
        raise SealError("a sealed box too short to hold anything")
    ephemeral_public, nonce, ciphertext = raw[:32], raw[32:44], raw[44:]
    try:
        private = X25519PrivateKey.from_private_bytes(pool_private)
    except ValueError as exc:
        raise SealError("a pool private key is 32 raw bytes") from exc
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key = _box_key(shared, ephemeral_public, _raw_public(private))
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, None)
    except InvalidTag as exc:
        raise SealError("a sealed box sealed to another pool key, or altered") from exc
    values = json.loads(plain)
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise SealError("a sealed box that does not hold name -> value strings")
    return values


def _check_pool(pool: str) -> str:
    if not _POOL.match(pool):
        raise SealError(f"pool name {pool!r}: use letters, digits, '.', '_' or '-'")
    return pool


def pool_keypair(directory: Path, pool: str) -> PoolKeypair:
    """The pool's key pair from `directory`, created (private key 0600) on first use."""
    private_path = directory / f"{_check_pool(pool)}.key"
    if not private_path.exists():
        _create(directory, pool)
    mode = stat.S_IMODE(private_path.stat().st_mode)
    if mode & 0o077:
        raise SealError(f"{private_path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        private = base64.b64decode(private_path.read_text(encoding="ascii").strip(), validate=True)
        key = X25519PrivateKey.from_private_bytes(private)
    except (ValueError, binascii.Error) as exc:
        raise SealError(f"{private_path} does not hold a base64 X25519 private key") from exc
    return PoolKeypair(private, _raw_public(key))


def pool_public_key(directory: Path, pool: str) -> bytes:
    """The pool's public key, from `<pool>.pub` (what the sealing side needs)."""
    path = directory / f"{_check_pool(pool)}.pub"
    try:
        raw = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, ValueError, binascii.Error) as exc:
        raise SealError(f"no readable pool public key at {path}") from exc
    if len(raw) != 32:
        raise SealError(f"{path} does not hold a 32-byte public key")
    return raw


def _create(directory: Path, pool: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key = X25519PrivateKey.generate()
    private = base64.b64encode(key.private_bytes_raw()).decode() + "\n"
    public = base64.b64encode(_raw_public(key)).decode() + "\n"
    # Written aside and linked into place: link refuses an existing name, so two workers
    # starting at once keep one key, and no reader ever sees half a key file.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{pool}.key.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(private)
        try:
            os.link(tmp, directory / f"{pool}.key")
        except FileExistsError:
            return
    finally:
        os.unlink(tmp)
    (directory / f"{pool}.pub").write_text(public, encoding="ascii")
