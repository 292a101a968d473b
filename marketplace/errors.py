"""The registry's typed errors: each says what was refused and what to do about it."""

from __future__ import annotations

from typing import Literal

Check = Literal["package", "signature", "namespace", "version", "world", "examples", "semver"]


class RegistryError(Exception):
    """Base of every error the registry's service layer raises."""


class PublishRefused(RegistryError):
    """A publish refused by one of the checks; the registry is unchanged."""

    def __init__(self, check: Check, reason: str) -> None:
        super().__init__(f"publish refused ({check} check): {reason}")
        self.check: Check = check
        self.reason = reason


class NotFound(RegistryError):
    """No such package, version, or no version matching a range."""


class Unauthorized(RegistryError):
    """A yank or approval not signed by a key allowed to make it."""


class InvalidRequest(RegistryError):
    """An argument that cannot be used (a malformed range, name or fingerprint)."""


class BundleError(RegistryError):
    """A bundle file that cannot be written, read or trusted; names the bundle and why."""


__all__ = [
    "BundleError",
    "Check",
    "InvalidRequest",
    "NotFound",
    "PublishRefused",
    "RegistryError",
    "Unauthorized",
]
