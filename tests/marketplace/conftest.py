"""Fixtures for the registry tests: signed packages of a copy of `connectors/encode`
(Zig: fast to build), keys, and registries on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.control.build import build_component
from flowforge.marketplace.service import Registry
from flowforge.runtime.manifest import ConnectorManifest, load_manifest
from flowforge.runtime.package import pack, sign_package

ENCODE = Path(__file__).parents[2] / "connectors" / "encode"
PG_HOST = os.environ.get("FLOWFORGE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FLOWFORGE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("FLOWFORGE_TEST_PG_USER", "postgres")
PG_DB = os.environ.get("FLOWFORGE_TEST_PG_DB", "test")

MakePackage = Callable[..., bytes]


@pytest.fixture(scope="session")
def encode_build() -> tuple[ConnectorManifest, bytes]:
    """The encode connector's manifest (renamed into the `acme` namespace, 1.0.0) and
    its built component."""
    manifest = load_manifest(ENCODE)
    built = build_component(ENCODE, manifest.language)
    renamed = manifest.model_copy(update={"name": "acme/encode", "version": "1.0.0"})
    return renamed, built.path.read_bytes()


@pytest.fixture
def owner_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def make_package(encode_build: tuple[ConnectorManifest, bytes]) -> MakePackage:
    """`make_package(key, **manifest_changes)`: a signed package of the encode build."""
    manifest, component = encode_build

    def make(key: Ed25519PrivateKey, **changes: Any) -> bytes:
        return sign_package(pack(manifest.model_copy(update=changes), component), key)

    return make


def _admin(statement: str) -> None:
    """Run one statement on the admin database, on a thread of its own (a test's event
    loop may be running in this one)."""

    async def go() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_DB)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own for one test, dropped afterwards."""
    name = f"ff_registry_{uuid.uuid4().hex[:12]}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not usable: {exc}")
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
