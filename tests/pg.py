"""A PostgreSQL database of its own for one test (127.0.0.1:5432, trust auth, user
postgres, unless FLOWFORGE_TEST_PG_* say otherwise), created and then dropped."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import asyncpg  # type: ignore[import-untyped]
import pytest

PG_HOST = os.environ.get("FLOWFORGE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FLOWFORGE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("FLOWFORGE_TEST_PG_USER", "postgres")
PG_DB = os.environ.get("FLOWFORGE_TEST_PG_DB", "postgres")


def admin(statement: str) -> None:
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


BACKENDS: Final = ["sqlite", "postgresql"]  # parametrize storage fixtures over these


@contextmanager
def database_for(backend: str, folder: Path, name: str) -> Iterator[str]:
    """A fresh database on `backend`: the SQLite file `<name>.db` in `folder`, or a new
    PostgreSQL database (dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / (name + '.db')}"
        return
    with fresh_database(f"ff_{name}") as url:
        yield url


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """The asyncpg URL of a new, empty database; skips the test when PostgreSQL is absent."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT} is not usable: {exc}"
        if os.environ.get("CI"):  # CI starts PostgreSQL; a silent skip there would hide it
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
