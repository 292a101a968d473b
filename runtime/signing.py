"""Ed25519 keys as FlowForge names them, and signatures over bytes.

A key is identified by its fingerprint, `ed25519:` + the hex sha256 of the raw 32-byte
public key. Public keys travel as one line, `ed25519 <base64 raw key> <fingerprint>`,
which `flowforge keys export` prints and `flowforge trust add` accepts; the fingerprint on
the line is a check that the key was copied whole.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM: Final = "ed25519"
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_FINGERPRINT = re.compile(r"^ed25519:[0-9a-f]{64}$")


class KeyFormatError(ValueError):
    """A public key or fingerprint that cannot be read; the message shows the expected form."""


def fingerprint(public_key: bytes) -> str:
    """`ed25519:` + hex sha256 of the raw 32-byte public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise KeyFormatError(
            f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}"
        )
    return f"{ALGORITHM}:{hashlib.sha256(public_key).hexdigest()}"


def is_fingerprint(text: str) -> bool:
    return bool(_FINGERPRINT.match(text))


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes_raw()


def encode_public_key(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """Raw key bytes from base64; KeyFormatError when it is not a 32-byte key."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{text!r} is not base64") from None
    fingerprint(raw)  # checks the length
    return raw


def public_key_line(public_key: bytes) -> str:
    """`ed25519 <base64> <fingerprint>`: the form `keys export` prints."""
    return f"{ALGORITHM} {encode_public_key(public_key)} {fingerprint(public_key)}"


def parse_public_key(text: str) -> bytes:
    """A public key from `ed25519 <base64> [<fingerprint>]` or bare base64.

    When the line carries a fingerprint it must match the key, so a truncated or edited
    copy is caught here rather than trusted.
    """
    parts = text.split()
    if parts and parts[0] == ALGORITHM:
        parts = parts[1:]
    if len(parts) not in (1, 2):
        raise KeyFormatError(
            f"expected a public key line 'ed25519 <base64> <fingerprint>' "
            f"(as `flowforge keys export NAME` prints it), got {text.strip()!r}"
        )
    raw = decode_public_key(parts[0])
    if len(parts) == 2 and parts[1] != fingerprint(raw):
        raise KeyFormatError(
            f"the fingerprint {parts[1]} on the line does not match the key "
            f"(its fingerprint is {fingerprint(raw)}); copy the whole line again"
        )
    return raw


def sign(private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    return private_key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is a valid Ed25519 signature of `message` under `public_key`."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
