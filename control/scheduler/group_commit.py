"""Group commit: the appends of many runs' decisions written in one transaction.

Each run decides alone (one drain per run), but a commit's fixed cost (the round trips
of BEGIN and COMMIT, the flush to disk, the hop to the database thread) is the same for
one event or fifty. While one transaction is in flight the next appends queue here and go
together in the next one, so a lone run waits no longer than before and many busy runs
share their commits. When the last commit was shared, the next one first lets the loop
turn twice, so the decisions under way at that moment join it: on SQLite, where an append
runs on the loop itself, nothing else would join while it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from flowforge.control.storage import Appended, EventStore
from flowforge.control.storage.events import AppendRequest

MAX_GROUP: Final = 64  # appends per transaction: bounds how long its locks are held
_GATHER_TURNS: Final = 2


class GroupCommit:
    """Appends to `events`, batched while a transaction is in flight."""

    def __init__(self, events: EventStore, max_group: int = MAX_GROUP) -> None:
        self.events = events
        self.max_group = max_group
        self._pending: list[tuple[AppendRequest, asyncio.Future[Appended]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._busy = False  # the last transaction was shared: many runs are deciding

    async def append(self, request: AppendRequest) -> Appended:
        """Write `request` (with whatever else is waiting); raises what `append` or
        `create_run` would raise for it alone."""
        done: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending.append((request, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        if self._busy:
            # Let the decisions already under way join this commit: two turns of the loop,
            # one for the callbacks that are ready (results handed to their runs), one for
            # the drains those start. A lone run (the last commit was its own) does not wait.
            for _ in range(_GATHER_TURNS):
                await asyncio.sleep(0)
        while self._pending:
            group, self._pending = self._pending[: self.max_group], self._pending[self.max_group :]
            self._busy = len(group) > 1
            try:
                outcomes = await self.events.append_many([r for r, _ in group])
            except BaseException as exc:  # the whole transaction failed: each caller hears
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, done), outcome in zip(group, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    async def close(self) -> None:
        """Wait for the appends already queued."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
