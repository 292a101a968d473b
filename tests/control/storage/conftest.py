"""Every storage test runs on SQLite and on PostgreSQL (a database of its own)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flowforge.control.storage import Storage
from tests.pg import BACKENDS, database_for


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_for(request.param, tmp_path, "flowforge") as url:
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
