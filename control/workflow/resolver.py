"""Resolving `uses: publisher/name@range` to one installed, pinned connector.

`Resolver` is what validation needs: the connector's exact version, its package digest
and its manifest, or a `ResolveError` saying why not. `WorkspaceResolver` reads what
`flowforge marketplace install` recorded (the lock file and `packages/<digest>.ffpkg`);
`StaticResolver` holds manifests in memory, for tests and embedded use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flowforge.marketplace.install import package_path
from flowforge.marketplace.lockfile import LockFile, LockFileError
from flowforge.marketplace.semver import Range, Version, VersionError
from flowforge.runtime.manifest import ConnectorManifest
from flowforge.runtime.package import PackageError, read_package, verify_package
from flowforge.runtime.trust import TrustStore


class ResolveError(Exception):
    """A connector that cannot be used; the message says why (not installed, no version
    in the range, a damaged package ...)."""


@dataclass(frozen=True, slots=True)
class ResolvedConnector:
    name: str
    version: str
    digest: str  # sha256 of the package file: what a worker loads and verifies
    manifest: ConnectorManifest


class Resolver(Protocol):
    def resolve(self, name: str, version_range: str) -> ResolvedConnector: ...


def _range(name: str, version_range: str) -> Range:
    try:
        return Range.parse(version_range)
    except VersionError as exc:
        raise ResolveError(f"{name}: {exc}") from None


class StaticResolver:
    """Connectors given up front: the highest version of a name within the range wins."""

    def __init__(self, connectors: Iterable[ResolvedConnector] = ()) -> None:
        self._by_name: dict[str, list[ResolvedConnector]] = {}
        for connector in connectors:
            self.add(connector)

    def add(self, connector: ResolvedConnector) -> None:
        self._by_name.setdefault(connector.name, []).append(connector)

    def resolve(self, name: str, version_range: str) -> ResolvedConnector:
        wanted = _range(name, version_range)
        candidates = self._by_name.get(name)
        if not candidates:
            raise ResolveError(f"{name} is not installed")
        by_version = {Version.parse(c.version): c for c in candidates}
        best = wanted.best(list(by_version))
        if best is None:
            have = ", ".join(sorted(c.version for c in candidates))
            raise ResolveError(f"no installed version of {name} matches {version_range!r} ({have})")
        return by_version[best]


class WorkspaceResolver:
    """The connectors installed in a workspace, as its lock file records them.

    With a trust store, each package's signature is checked too (what the worker will
    check before it runs the step); without one, its form and digests are.
    """

    def __init__(self, workspace: Path, trust: TrustStore | None = None) -> None:
        self.workspace = workspace
        self.trust = trust
        self._cache: dict[str, ResolvedConnector] = {}

    def resolve(self, name: str, version_range: str) -> ResolvedConnector:
        wanted = _range(name, version_range)
        lock = LockFile(self.workspace)
        try:
            entry = lock.get(name)
        except LockFileError as exc:
            raise ResolveError(str(exc)) from None
        if entry is None:
            raise ResolveError(
                f"{name} is not installed in {self.workspace} "
                f"(flowforge marketplace install {name})"
            )
        if not wanted.matches(Version.parse(entry.version)):
            raise ResolveError(
                f"{name} is installed at {entry.version}, which does not match "
                f"{version_range!r} (flowforge marketplace install {name} "
                f"'{version_range}' --update)"
            )
        cached = self._cache.get(entry.package_sha256)
        if cached is not None:
            return cached
        resolved = self._read(name, entry.version, entry.package_sha256)
        self._cache[entry.package_sha256] = resolved
        return resolved

    def _read(self, name: str, version: str, digest: str) -> ResolvedConnector:
        path = package_path(self.workspace, digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ResolveError(
                f"{name}@{version}: the package file {path} is missing; reinstall it"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ResolveError(
                f"{name}@{version}: {path} has sha256 {actual}, the lock file pins {digest}"
            )
        try:
            if self.trust is not None:
                manifest = verify_package(data, self.trust).manifest
            else:
                manifest = read_package(data).manifest
        except PackageError as exc:
            raise ResolveError(f"{name}@{version}: {exc.reason}") from None
        if manifest.name != name or manifest.version != version:
            raise ResolveError(
                f"{path} holds {manifest.name}@{manifest.version}, "
                f"the lock file says {name}@{version}"
            )
        return ResolvedConnector(name, version, digest, manifest)


__all__ = [
    "ResolveError",
    "ResolvedConnector",
    "Resolver",
    "StaticResolver",
    "WorkspaceResolver",
]
