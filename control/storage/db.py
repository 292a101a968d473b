"""Where the control plane's database is, and opening it at the current schema.

SQLite at `<workspace>/flowforge.db` by default; `$FLOWFORGE_DATABASE` (or an explicit URL)
names another, e.g. `postgresql+asyncpg://flowforge@db:5432/flowforge`. The engine and the
migration runner are the ones the registry uses (`flowforge.marketplace.db`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from flowforge.marketplace.db import Schema, make_engine, migrate

DATABASE_ENV: Final = "FLOWFORGE_DATABASE"
# Its own version table, so the control plane and the registry can share one database.
CONTROL_SCHEMA: Final = Schema(Path(__file__).parent / "migrations", "flowforge_control_version")


def default_url(workspace: Path) -> str:
    return f"sqlite+aiosqlite:///{workspace / 'flowforge.db'}"


def database_url(workspace: Path, explicit: str | None = None) -> str:
    """`explicit`, else `$FLOWFORGE_DATABASE`, else SQLite in the workspace."""
    return explicit or os.environ.get(DATABASE_ENV) or default_url(workspace)


async def open_engine(url: str) -> AsyncEngine:
    """An engine on `url` with the schema brought up to date (cheap when it already is)."""
    engine = make_engine(url)
    try:
        await migrate(engine, CONTROL_SCHEMA)
    except BaseException:
        await engine.dispose()
        raise
    return engine
