"""Signed statements that authorize registry changes other than publishing.

Publishing is authorized by the package's own signature. A yank or a key approval is
authorized by an Ed25519 signature over a canonical statement naming the action and its
target, made by the caller's key: the registry never sees a private key, so the same
request can travel over the network later (gRPC) unchanged. A statement names exactly one
action on one target, so a captured one cannot be turned into another change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.runtime.canonical import canonical_json
from flowforge.runtime.signing import fingerprint, raw_public_key, sign, verify

_PURPOSE: Final = "flowforge-registry-authorization/1"


@dataclass(frozen=True, slots=True)
class Authorization:
    """A signature by the key `key` (fingerprint) over one statement."""

    key: str
    signature: bytes


def statement(action: str, **target: str) -> bytes:
    return canonical_json({"purpose": _PURPOSE, "action": action, **target})


def authorize(private_key: Ed25519PrivateKey, action: str, **target: str) -> Authorization:
    """Sign the statement `action` on `target` (e.g. yank name=..., version=...)."""
    return Authorization(
        fingerprint(raw_public_key(private_key)), sign(private_key, statement(action, **target))
    )


def yank_authorization(private_key: Ed25519PrivateKey, name: str, version: str) -> Authorization:
    return authorize(private_key, "yank", name=name, version=version)


def approval_authorization(
    private_key: Ed25519PrivateKey, namespace: str, key_fingerprint: str
) -> Authorization:
    return authorize(private_key, "approve-key", namespace=namespace, fingerprint=key_fingerprint)


def is_valid(auth: Authorization, public_key: bytes, action: str, **target: str) -> bool:
    return fingerprint(public_key) == auth.key and verify(
        public_key, auth.signature, statement(action, **target)
    )


__all__ = [
    "Authorization",
    "approval_authorization",
    "authorize",
    "is_valid",
    "statement",
    "yank_authorization",
]
