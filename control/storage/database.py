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

The loop's connection does not checkpoint the write-ahead log: a checkpoint syncs the files
to disk, and one every thousand pages or so (SQLite's default) made one run in twenty
several milliseconds slower. The database thread checkpoints instead, every
`_CHECKPOINT_EVERY` hot transactions, while the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, Final, ParamSpec, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowforge.marketplace.db import make_sync_sqlite_engine

from .db import open_engine

P = ParamSpec("P")
T = TypeVar("T")

_CHECKPOINT_EVERY: Final = 100  # hot transactions between checkpoints (module doc)
log = logging.getLogger(__name__)


class Database:
    """The control plane's database, migrated, ready for `transaction`."""

    def __init__(self, engine: AsyncEngine, sqlite: Engine | None = None) -> None:
        self.engine = engine
        self._sqlite = sqlite
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="flowforge-sqlite") if sqlite else None
        )
        # The hot transactions' own connection, kept rather than taken from the pool (on
        # PostgreSQL, checking a pooled connection out pings the server first: 0.6 ms
        # of a 1.4 ms append) and given back (and reset) each time.
        self._hot: Connection | None = None  # SQLite: used on the loop's thread only
        self._hot_count = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._hot_pg = _Dedicated(engine, autocommit=False)
        self._single_pg = _Dedicated(engine, autocommit=True)

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
        """As `transaction`, for short writes of bounded size on the hot path, on a
        connection of their own: SQLite runs them on the calling thread (see the module
        doc). On PostgreSQL `fn` may run twice when the connection was lost (see
        `_hot_postgresql`): the event log's appends are safe to repeat."""
        if self._sqlite is None:
            return await self._hot_postgresql(fn, *args, **kwargs)
        if self._hot is None:
            self._hot = self._sqlite.connect()
            driver = self._hot.connection.driver_connection
            assert driver is not None  # a connection just made
            driver.execute("PRAGMA wal_autocheckpoint=0")
        with self._hot.begin():
            done = fn(self._hot, *args, **kwargs)
        self._hot_count += 1
        if self._hot_count % _CHECKPOINT_EVERY == 0:
            self._checkpoint_soon()
        return done

    def _checkpoint_soon(self) -> None:
        """Checkpoint the write-ahead log on the database thread (see the module doc)."""
        if self._sqlite is None or self._thread is None:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        engine = self._sqlite

        def job() -> None:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

        self._checkpoint = asyncio.get_running_loop().run_in_executor(self._thread, job)
        self._checkpoint.add_done_callback(_report_checkpoint)

    async def _hot_postgresql(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._hot_pg.busy:  # the connection is busy: a pooled one, not a queue
            return await self.transaction(fn, *args, **kwargs)
        return await self._hot_pg.run(fn, *args, **kwargs)

    async def single_statement(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """PostgreSQL: `fn`, which runs one statement, committed on its own: autocommit,
        so without the round trips of BEGIN and COMMIT. None on SQLite (which has no round
        trips to save) or while the connection is busy: the caller writes the usual way."""
        if self._sqlite is not None or self._single_pg.busy:
            return None
        return await self._single_pg.run(fn, *args, **kwargs)

    async def close(self) -> None:
        if self._hot is not None:
            self._hot.close()
            self._hot = None
        await self._hot_pg.close()
        await self._single_pg.close()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sqlite is not None:
            self._sqlite.dispose()
        await self.engine.dispose()


def _report_checkpoint(done: asyncio.Future[None]) -> None:
    # Not fatal: the next one, or closing the database, checkpoints what this one did not.
    if not done.cancelled() and done.exception() is not None:
        log.warning("could not checkpoint the SQLite log: %s", done.exception())


class _Dedicated:
    """A PostgreSQL connection kept for one kind of work, one user at a time, replaced
    when the server has dropped it."""

    def __init__(self, engine: AsyncEngine, *, autocommit: bool) -> None:
        self._engine = engine
        self._autocommit = autocommit
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._lock:
            for last_try in (False, True):
                if self._conn is None:
                    conn = await self._engine.connect()
                    if self._autocommit:
                        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    self._conn = conn
                try:
                    if self._autocommit:
                        return await self._conn.run_sync(fn, *args, **kwargs)
                    async with self._conn.begin():
                        return await self._conn.run_sync(fn, *args, **kwargs)
                except DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    # The server went away since the last use (a restart): the next try
                    # connects afresh, as a pooled connection's ping would have. A COMMIT
                    # whose answer was lost is safe to repeat: the append's idempotency
                    # keys and compare-and-set turn a repeat into a reported duplicate.
                    await self.close()
                    if last_try:
                        raise
        raise AssertionError("unreachable: the last try returns or raises")

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                await self._conn.close()
            self._conn = None
