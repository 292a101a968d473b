"""Running one job against the workspace's run database, for the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from flowforge.control.scheduler import CatalogError, SchedulerError
from flowforge.control.storage import Storage, StorageError, database_url
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError

from .options import fail

T = TypeVar("T")


def with_storage(
    workspace: Path | None, database: str | None, job: Callable[[Storage], Awaitable[T]]
) -> T:
    """Open the database (`--database`, else the workspace's), run `job`, close it; a
    storage, catalog or scheduler error ends the command with its message (exit 1)."""

    async def go() -> T:
        storage = await Storage.open(database_url(workspace_dir(workspace), database))
        try:
            return await job(storage)
        finally:
            await storage.close()

    try:
        return asyncio.run(go())
    except (SchedulerError, CatalogError, StorageError, DatabaseError) as exc:
        fail(str(exc), code=1)
