"""Where workflow versions and connector packages come from, for the scheduler.

A stored version is only its canonical bytes; `VersionCatalog.get` rebuilds the pinned
`WorkflowVersion` from them (validating the stored spec again against the very packages
it pins, found by digest) and checks the hash is unchanged. Packages are files named by
their sha256 in one or more folders (`PackageFolders`): the workspace's `packages/`
(installed, signed) and, on the development path, the folder where `DevConnectors` puts
the unsigned packages it builds from local connector sources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.control.storage import Storage
from flowforge.control.workflow import (
    ResolvedConnector,
    ResolveError,
    WorkflowVersion,
    spec_from_data,
    validate,
)
from flowforge.marketplace.semver import Range, Version, VersionError
from flowforge.runtime.files import write_atomically
from flowforge.runtime.manifest import ManifestError, load_manifest
from flowforge.runtime.package import PACKAGE_SUFFIX, PackageError, pack, read_package
from flowforge.runtime.worker import PackageMissing


class CatalogError(Exception):
    """A stored version that cannot be rebuilt (a package it pins is gone ...)."""


class PackageFolders:
    """Package files `<digest>.ffpkg` looked up in several folders in turn; also the
    worker's `PackageSource`."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = tuple(folders)
        self._manifests: dict[str, ResolvedConnector] = {}

    def read(self, digest: str) -> bytes:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise PackageMissing(f"{digest!r} is not a sha256 hex digest")
        for folder in self.folders:
            path = folder / f"{digest}{PACKAGE_SUFFIX}"
            if path.is_file():
                return path.read_bytes()
        shown = ", ".join(str(f) for f in self.folders)
        raise PackageMissing(f"no package {digest} in {shown}")

    def connector(self, digest: str) -> ResolvedConnector:
        """The connector a package file holds (its manifest), by the file's digest."""
        found = self._manifests.get(digest)
        if found is None:
            manifest = read_package(self.read(digest)).manifest
            found = ResolvedConnector(manifest.name, manifest.version, digest, manifest)
            self._manifests[digest] = found
        return found


class _PinnedResolver:
    """Resolves each connector name to the package a stored version pinned."""

    def __init__(self, pins: Mapping[str, ResolvedConnector]) -> None:
        self.pins = pins

    def resolve(self, name: str, version_range: str) -> ResolvedConnector:
        found = self.pins.get(name)
        if found is None:
            raise ResolveError(f"{name} is not pinned by this version")
        return found


def version_from_canonical(canonical: bytes, packages: PackageFolders) -> WorkflowVersion:
    """The `WorkflowVersion` whose canonical form is `canonical`."""
    doc = json.loads(canonical)
    pins: dict[str, ResolvedConnector] = {}
    for step, pin in doc["pins"].items():
        try:
            pins[pin["name"]] = packages.connector(pin["digest"])
        except (PackageMissing, PackageError) as exc:
            raise CatalogError(f"step {step}: {pin['name']}@{pin['version']}: {exc}") from None
    version = validate(spec_from_data(doc["spec"]), _PinnedResolver(pins))
    expected = hashlib.sha256(canonical).hexdigest()
    if version.version != expected:
        raise CatalogError(f"version {expected} rebuilt as {version.version}")
    return version


class VersionCatalog:
    """Versions by hash: kept in memory once seen, stored once, rebuilt when needed."""

    def __init__(self, storage: Storage, packages: PackageFolders) -> None:
        self.storage = storage
        self.packages = packages
        self._versions: dict[str, WorkflowVersion] = {}
        self._stored: set[str] = set()

    async def put(self, version: WorkflowVersion) -> bool:
        """Store `version` (once per process); True when the database did not hold it."""
        self._versions.setdefault(version.version, version)
        if version.version in self._stored:
            return False
        _stored, new = await self.storage.versions.put(
            version.name, version.version, version.canonical
        )
        self._stored.add(version.version)
        return new

    async def get(self, version: str) -> WorkflowVersion:
        found = self._versions.get(version)
        if found is None:
            stored = await self.storage.versions.get(version)
            found = version_from_canonical(stored.canonical, self.packages)
            self._versions[version] = found
            self._stored.add(version)
        return found


class DevConnectors:
    """The development resolver: `uses` resolved against local connector folders (each
    with a `connector.toml`), built with the project's builder and packed unsigned into
    `out` (named by digest, so the worker finds them like installed ones)."""

    def __init__(
        self, root: Path, out: Path, progress: Callable[[str], None] | None = None
    ) -> None:
        self.root = root
        self.out = out
        self.progress = progress
        self._folders: dict[str, Path] | None = None
        self._built: dict[str, ResolvedConnector] = {}

    def _index(self) -> dict[str, Path]:
        if self._folders is None:
            folders: dict[str, Path] = {}
            candidates = [self.root, *sorted(p for p in self.root.iterdir() if p.is_dir())]
            for folder in candidates:
                if (folder / "connector.toml").is_file():
                    try:
                        folders[load_manifest(folder).name] = folder
                    except ManifestError:
                        continue  # reported if a workflow uses it
            self._folders = folders
        return self._folders

    def resolve(self, name: str, version_range: str) -> ResolvedConnector:
        built = self._built.get(name)
        if built is None:
            built = self._build(name)
            self._built[name] = built
        try:
            wanted = Range.parse(version_range)
            matches = wanted.matches(Version.parse(built.version))
        except VersionError as exc:
            raise ResolveError(f"{name}: {exc}") from None
        if not matches:
            raise ResolveError(
                f"{name} in {self.root} is at {built.version}, which does not match "
                f"{version_range!r}"
            )
        return built

    def _build(self, name: str) -> ResolvedConnector:
        folder = self._index().get(name)
        if folder is None:
            raise ResolveError(f"no connector folder for {name} in {self.root}")
        try:
            manifest = load_manifest(folder)
            component = build_component(folder, manifest.language, progress=self.progress)
            data = pack(manifest, component.path.read_bytes())
        except (ManifestError, BuildError, ToolchainError, PackageError) as exc:
            raise ResolveError(f"{name}: building {folder} failed: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        self.out.mkdir(parents=True, exist_ok=True)
        target = self.out / f"{digest}{PACKAGE_SUFFIX}"
        if not target.exists():
            write_atomically(target, data)
        packed = read_package(data).manifest
        return ResolvedConnector(packed.name, packed.version, digest, packed)


__all__ = [
    "CatalogError",
    "DevConnectors",
    "PackageFolders",
    "VersionCatalog",
    "version_from_canonical",
]
