"""Every storage test runs on SQLite and on PostgreSQL (a database of its own)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flowforge.control.storage import Storage
from tests.pg import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'flowforge.db'}"
        return
    with fresh_database("ff_control") as url:
        yield url


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    store = await Storage.open(db_url)
    try:
        yield store
    finally:
        await store.close()


CANONICAL = b'{"name":"demo","steps":{}}'
VERSION = hashlib.sha256(CANONICAL).hexdigest()


@pytest.fixture
async def version(storage: Storage) -> str:
    """A stored workflow version for runs to point at."""
    await storage.versions.put("demo", VERSION, CANONICAL)
    return VERSION
