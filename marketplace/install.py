"""Installing connectors from a registry into a workspace.

`install` resolves the highest non-yanked version in the range, downloads it, verifies it
against the workspace trust store (the registry is not trusted: the signature is), checks
the gate, precompiles the component into the runtime's compile cache, keeps the package
file as `<workspace>/packages/<sha256>.ffpkg` and records name, version and digest in
`flowforge.lock`. A locked name installs exactly its locked version and bytes: different
bytes are refused (the lock wins) until `update=True` moves the lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from flowforge.runtime.files import write_atomically
from flowforge.runtime.loader import LoadError
from flowforge.runtime.package import PACKAGE_SUFFIX, PackageError, verify_package
from flowforge.runtime.sandbox import Sandbox
from flowforge.runtime.trust import TrustStore

from .blobs import sha256
from .errors import InvalidRequest, RegistryError
from .lockfile import LockEntry, LockFile
from .records import VersionInfo
from .scoring import gate
from .semver import Range, Version, VersionError

PACKAGES_DIR: Final = "packages"


class PackageSource(Protocol):
    """Where install gets packages: a `Registry`, or one served over the API."""

    async def resolve(
        self, name: str, spec: str = "*", include_yanked: bool = False
    ) -> VersionInfo: ...

    async def download(self, name: str, spec: str = "*", include_yanked: bool = False) -> bytes: ...


class InstallRefused(RegistryError):
    """An install or uninstall that was refused; the workspace is unchanged."""


@dataclass(frozen=True, slots=True)
class Installed:
    name: str
    version: str
    package_sha256: str
    component_sha256: str
    path: Path
    previous: LockEntry | None  # the entry this install replaced, if any


def package_path(workspace: Path, package_sha256: str) -> Path:
    return workspace / PACKAGES_DIR / f"{package_sha256}{PACKAGE_SUFFIX}"


def installed_path(workspace: Path, name: str) -> Path:
    """The package file the lock file records for `name`."""
    entry = LockFile(workspace).get(name)
    if entry is None:
        raise InstallRefused(f"{name} is not installed in {workspace}")
    return package_path(workspace, entry.package_sha256)


def _say(_message: str) -> None:
    pass


async def install(
    registry: PackageSource,
    workspace: Path,
    trust: TrustStore,
    name: str,
    spec: str = "*",
    *,
    update: bool = False,
    sandbox: Sandbox | None = None,
    progress: Callable[[str], None] = _say,
) -> Installed:
    """Install `name` at the highest version in `spec`; see the module docstring."""
    try:
        wanted = Range.parse(spec)
    except VersionError as exc:
        raise InvalidRequest(str(exc)) from None
    lock = LockFile(workspace)
    pinned = None if update else lock.get(name)
    if pinned is not None:
        if not wanted.matches(Version.parse(pinned.version)) and spec.strip() not in ("", "*"):
            raise InstallRefused(
                f"{name} is locked at {pinned.version} in {lock.path}, outside {spec!r}; "
                "install with --update to move the lock"
            )
        version = pinned.version
    else:
        version = (await registry.resolve(name, spec)).version
    progress(f"downloading {name}@{version}")
    data = await registry.download(name, f"={version}", include_yanked=pinned is not None)
    digest = sha256(data)
    if pinned is not None and digest != pinned.package_sha256:
        raise InstallRefused(
            f"{name}@{version} downloaded with sha256 {digest}, but {lock.path} pins "
            f"{pinned.package_sha256}: the registry serves other bytes for a locked version. "
            "The lock wins; install with --update only if you trust the new bytes"
        )
    progress(f"verifying {name}@{version} against {trust.path}")
    try:
        verified = await asyncio.to_thread(verify_package, data, trust)
    except PackageError as exc:
        raise InstallRefused(f"{name}@{version}: {exc.reason}") from None
    if verified.label != f"{name}@{version}":
        raise InstallRefused(f"asked for {name}@{version}, the registry sent {verified.label}")
    verdict = gate(verified.manifest.world)
    if not verdict.installable:
        raise InstallRefused(f"{name}@{version} is not installable: {verdict.reason}")
    progress(f"compiling {name}@{version} into the runtime's cache")
    own = sandbox is None
    box = sandbox or Sandbox()
    try:
        await asyncio.to_thread(box.load, verified.component, verified.label)
    except LoadError as exc:
        raise InstallRefused(str(exc)) from None
    finally:
        if own:
            box.close()
    target = package_path(workspace, digest)
    write_atomically(target, data)
    entry = LockEntry(name, version, digest, verified.component_sha256)
    with lock.editing() as entries:
        previous = entries.get(name)
        entries[name] = entry
        _drop_unused(workspace, entries, previous)
    return Installed(name, version, digest, verified.component_sha256, target, previous)


def _drop_unused(workspace: Path, entries: dict[str, LockEntry], old: LockEntry | None) -> None:
    if old is not None and all(e.package_sha256 != old.package_sha256 for e in entries.values()):
        package_path(workspace, old.package_sha256).unlink(missing_ok=True)


def uninstall(workspace: Path, name: str) -> LockEntry:
    """Remove `name` from the lock file, and its package file when nothing else uses it."""
    lock = LockFile(workspace)
    with lock.editing() as entries:
        entry = entries.pop(name, None)
        if entry is None:
            raise InstallRefused(f"{name} is not installed ({lock.path} has no entry)")
        _drop_unused(workspace, entries, entry)
    return entry


__all__ = [
    "PACKAGES_DIR",
    "InstallRefused",
    "Installed",
    "PackageSource",
    "install",
    "installed_path",
    "package_path",
    "uninstall",
]
