"""Fixtures for the registry tests: signed packages of a copy of `connectors/encode`
(Zig: fast to build), keys, and registries on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.control.build import build_component
from flowforge.marketplace.service import Registry
from flowforge.runtime.manifest import ConnectorManifest, load_manifest
from flowforge.runtime.package import pack, sign_package
from tests.pg import fresh_database

ENCODE = Path(__file__).parents[2] / "connectors" / "encode"

MakePackage = Callable[..., bytes]


def build_encode() -> tuple[ConnectorManifest, bytes]:
    """The encode connector's manifest (renamed into the `acme` namespace, 1.0.0) and
    its built component (the build cache makes repeated calls cheap)."""
    manifest = load_manifest(ENCODE)
    built = build_component(ENCODE, manifest.language)
    renamed = manifest.model_copy(update={"name": "acme/encode", "version": "1.0.0"})
    return renamed, built.path.read_bytes()


def package_maker(build: tuple[ConnectorManifest, bytes]) -> MakePackage:
    """`make(key, **manifest_changes)`: a signed package of `build`."""
    manifest, component = build

    def make(key: Ed25519PrivateKey, **changes: Any) -> bytes:
        return sign_package(pack(manifest.model_copy(update=changes), component), key)

    return make


@pytest.fixture(scope="session")
def encode_build() -> tuple[ConnectorManifest, bytes]:
    return build_encode()


@pytest.fixture
def owner_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def make_package(encode_build: tuple[ConnectorManifest, bytes]) -> MakePackage:
    """`make_package(key, **manifest_changes)`: a signed package of the encode build."""
    return package_maker(encode_build)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own for one test, dropped afterwards."""
    with fresh_database("ff_registry") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def registry(registry_url: str, tmp_path: Path) -> AsyncIterator[Registry]:
    """A fresh registry on each backend, blobs in the test's folder."""
    url = registry_url
    reg = await Registry.open(url, tmp_path / "blobs")
    try:
        yield reg
    finally:
        await reg.close()


@pytest.fixture
async def sqlite_registry(tmp_path: Path) -> AsyncIterator[Registry]:
    reg = await Registry.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", tmp_path / "blobs")
    try:
        yield reg
    finally:
        await reg.close()
