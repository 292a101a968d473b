"""Databases: URL checks, the async engine, and schema migrations.

Shared by the registry and the control plane (which reaches it through the
control -> marketplace dependency): each has its own `Schema` (its migrations folder and the
table that records how far they ran), so both can live in one PostgreSQL database.

Alembic owns each schema. It runs programmatically on the async engine's connection
(`AsyncConnection.run_sync` hands Alembic an ordinary `Connection`), so the same
migrations serve SQLite (aiosqlite) and PostgreSQL (asyncpg) and there is no alembic.ini.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS: Final = Path(__file__).parent / "migrations"
REGISTRY_ENV: Final = "FLOWFORGE_REGISTRY"
_SUPPORTED: Final = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


class DatabaseError(Exception):
    """A database URL this build cannot use, or a database at an unknown schema."""


@dataclass(frozen=True, slots=True)
class Schema:
    """One set of Alembic migrations, and the table that records how far they have run.
    Its `env.py` must configure Alembic with the same `version_table`."""

    migrations: Path
    version_table: str = "alembic_version"


REGISTRY_SCHEMA: Final = Schema(MIGRATIONS)


def default_url(registry_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{registry_dir / 'registry.db'}"


def _alembic_config(connection: Connection, schema: Schema) -> Config:
    config = Config()
    config.set_main_option("script_location", str(schema.migrations))
    config.attributes["connection"] = connection
    return config


def _revision(connection: Connection, schema: Schema) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": schema.version_table})
    return context.get_current_revision()


def head_revision(schema: Schema = REGISTRY_SCHEMA) -> str:
    head = ScriptDirectory(str(schema.migrations)).get_current_head()
    if head is None:
        raise DatabaseError(f"no migrations found in {schema.migrations}")
    return head


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside a writer.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives a
    # crash of the process (what the durability tests kill), and only a power cut can
    # lose the last few; FULL would cost an fsync per appended event.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    if not url.startswith(_SUPPORTED):
        raise DatabaseError(
            f"database URL {url!r}: use sqlite+aiosqlite:///PATH or "
            "postgresql+asyncpg://USER@HOST:PORT/DB"
        )
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite+aiosqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def make_sync_sqlite_engine(url: str) -> Engine:
    """A synchronous engine on the same SQLite file as `sqlite+aiosqlite:///PATH`, with the
    same pragmas: for code that runs whole transactions on a thread of its own, where the
    aiosqlite adapter's several thread hops per statement would dominate."""
    if not url.startswith("sqlite+aiosqlite:///"):
        raise DatabaseError(f"not a SQLite file URL: {url!r}")
    engine = create_engine(url.replace("sqlite+aiosqlite://", "sqlite://", 1))
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


async def migrate(engine: AsyncEngine, schema: Schema = REGISTRY_SCHEMA) -> str:
    """Bring the schema up to the newest migration; returns the revision it is at."""
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync: command.upgrade(_alembic_config(sync, schema), "head")
        )
        revision = await connection.run_sync(_revision, schema)
    if revision is None:
        raise DatabaseError("the migrations ran but left no revision")
    return revision


async def current_revision(engine: AsyncEngine, schema: Schema = REGISTRY_SCHEMA) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_revision, schema)


__all__ = [
    "MIGRATIONS",
    "REGISTRY_ENV",
    "REGISTRY_SCHEMA",
    "DatabaseError",
    "Schema",
    "current_revision",
    "default_url",
    "head_revision",
    "make_engine",
    "make_sync_sqlite_engine",
    "migrate",
]
