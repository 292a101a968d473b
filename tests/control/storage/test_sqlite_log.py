"""SQLite's write-ahead log while the control plane runs: the event loop's appends do not
checkpoint it, the database thread does, so what is appended reaches the database file
while the engine runs and the log does not grow without end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flowforge.control.storage import EventType, NewEvent, Storage
from tests.control.storage.conftest import CANONICAL, VERSION


async def test_the_log_is_checkpointed_while_appends_run_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "flowforge.db"
    storage = await Storage.open(f"sqlite+aiosqlite:///{path}")
    try:
        await storage.versions.put("demo", VERSION, CANONICAL)
        events = storage.events
        await events.create_run("run-1", workflow="demo", version=VERSION, project="p", input={})
        before = path.stat().st_size
        padding = "x" * 2000  # a page or so per event
        for seq in range(1, 401):
            step = NewEvent(EventType.STEP_DISPATCHED, {"step": "a", "pad": padding}, f"k{seq}")
            await events.append("run-1", seq - 1, [step])
        await storage.db.transaction(lambda conn: None)  # queued behind any checkpoint
        grown = path.stat().st_size
        wal = Path(f"{path}-wal").stat().st_size
    finally:
        await storage.close()
    # 400 appends of ~2 kB: the database file holds them, not only the log.
    assert grown - before > 400 * 2000 // 2, (before, grown, wal)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (400,)
