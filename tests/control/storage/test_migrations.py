"""The schema comes from the Alembic migrations, on both backends, and lives beside the
registry's in one database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from flowforge.control.storage import CONTROL_SCHEMA, Storage, database_url, open_engine
from flowforge.control.storage.models import Base
from flowforge.marketplace.db import REGISTRY_SCHEMA, current_revision, head_revision, migrate


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_make_every_model_table_and_rerun_cleanly(db_url: str) -> None:
    engine = await open_engine(db_url)
    try:
        assert await current_revision(engine, CONTROL_SCHEMA) == head_revision(CONTROL_SCHEMA)
        async with engine.connect() as conn:
            tables = await conn.run_sync(_tables)
        assert set(Base.metadata.tables) <= tables
        assert CONTROL_SCHEMA.version_table in tables
        # Opening again finds nothing to do.
        assert await migrate(engine, CONTROL_SCHEMA) == head_revision(CONTROL_SCHEMA)
    finally:
        await engine.dispose()


async def test_registry_and_control_plane_share_one_database(db_url: str) -> None:
    engine = await open_engine(db_url)
    try:
        await migrate(engine, REGISTRY_SCHEMA)
        assert await current_revision(engine, REGISTRY_SCHEMA) == head_revision(REGISTRY_SCHEMA)
        assert await current_revision(engine, CONTROL_SCHEMA) == head_revision(CONTROL_SCHEMA)
        async with engine.connect() as conn:
            tables = await conn.run_sync(_tables)
        assert {"packages", "runs", "events"} <= tables
    finally:
        await engine.dispose()


def test_default_database_is_sqlite_in_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWFORGE_DATABASE", raising=False)
    assert database_url(tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'flowforge.db'}"
    monkeypatch.setenv("FLOWFORGE_DATABASE", "postgresql+asyncpg://u@h:1/d")
    assert database_url(tmp_path) == "postgresql+asyncpg://u@h:1/d"
    assert database_url(tmp_path, "sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"


async def test_versions_and_runs_survive_reopening(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'flowforge.db'}"
    canonical = b'{"name":"w"}'
    version = hashlib.sha256(canonical).hexdigest()
    async with await Storage.open(url) as storage:
        await storage.versions.put("w", version, canonical)
        await storage.events.create_run("r", workflow="w", version=version, project="p", input=1)
    async with await Storage.open(url) as storage:
        assert (await storage.versions.get(version)).canonical == canonical
        assert (await storage.events.run("r")).input == 1
