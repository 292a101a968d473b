"""One way to run storage code: a function over a SQLAlchemy `Connection`, run inside one
transaction, awaited.

PostgreSQL runs it on the async engine through `run_sync` (asyncpg underneath). SQLite runs
it on a synchronous engine in a thread of its own: the aiosqlite adapter pays several
thread hops per statement, which made an event append cost about five times as much (see
bench/storage.py); one hop per transaction keeps an append to a few hundred microseconds.

`hot_transaction` is for the scheduler's appends, short and bounded: on SQLite it runs on
the event loop's own thread. Even one hop there and back (a wake-up of each thread, and the
GIL changing hands) cost as much as the append itself on a 2-core machine (bench/storage.py
prints both), and the loop waited for the append anyway: the step after it cannot be
dispatched before its dispatch event is stored. The loop and the database thread are one
writer each, so SQLite's lock only ever has two contenders in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from flowforge.marketplace.db import make_sync_sqlite_engine

from .db import open_engine

P = ParamSpec("P")
T = TypeVar("T")


class Database:
    """The control plane's database, migrated, ready for `transaction`."""

    def __init__(self, engine: AsyncEngine, sqlite: Engine | None = None) -> None:
        self.engine = engine
        self._sqlite = sqlite
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="flowforge-sqlite") if sqlite else None
        )
        # The hot transactions' own connection, kept rather than taken from the pool and
        # given back (and reset) each time: the loop is their only user.
        self._hot: Connection | None = None

    @classmethod
    async def open(cls, url: str) -> Database:
        engine = await open_engine(url)
        if not url.startswith("sqlite+aiosqlite:///") or url.endswith(":memory:"):
            return cls(engine)
        # The async engine only ran the migrations; the thread's engine does the work.
        await engine.dispose()
        return cls(engine, make_sync_sqlite_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def transaction(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(connection, *args, **kwargs)` in one transaction: committed when it returns,
        rolled back when it raises."""
        if self._sqlite is None or self._thread is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)
        engine = self._sqlite

        def job() -> T:
            with engine.begin() as conn:
                return fn(conn, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    async def hot_transaction(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """As `transaction`, for short writes of bounded size on the hot path: SQLite runs
        them on the calling thread (see the module doc)."""
        if self._sqlite is None:
            return await self.transaction(fn, *args, **kwargs)
        if self._hot is None:
            self._hot = self._sqlite.connect()
        with self._hot.begin():
            return fn(self._hot, *args, **kwargs)

    async def close(self) -> None:
        if self._hot is not None:
            self._hot.close()
            self._hot = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sqlite is not None:
            self._sqlite.dispose()
        await self.engine.dispose()
