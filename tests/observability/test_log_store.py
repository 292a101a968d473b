"""Step logs: numbered per run, read back in order, filtered by step and resumed after a
seq; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from flowforge.control.storage import NewLogLine, Storage, UnknownRun
from flowforge.control.storage.logs import LogSource


async def new_run(storage: Storage, version: str, run_id: str) -> None:
    await storage.events.create_run(
        run_id, workflow="demo", version=version, project="default", input={}
    )


def line(
    step: str, message: str, *, attempt: int = 1, source: LogSource = "connector"
) -> NewLogLine:
    return NewLogLine(
        step=step,
        attempt=attempt,
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        level="info",
        message=message,
        source=source,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
    )


async def test_lines_are_numbered_per_run_and_read_back_in_order(
    storage: Storage, version: str
) -> None:
    await new_run(storage, version, "run-1")
    await new_run(storage, version, "run-2")
    await storage.logs.append("run-1", [line("a", "one"), line("a", "two")])
    await storage.logs.append("run-2", [line("a", "other run")])
    await storage.logs.append("run-1", [line("b", "three", source="scheduler", attempt=2)])

    records = await storage.logs.read("run-1")
    assert [(r.seq, r.step, r.message) for r in records] == [
        (1, "a", "one"),
        (2, "a", "two"),
        (3, "b", "three"),
    ]
    third = records[2]
    assert (third.run_id, third.attempt, third.source, third.level) == (
        "run-1",
        2,
        "scheduler",
        "info",
    )
    assert third.at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (third.trace_id, third.span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert [r.seq for r in await storage.logs.read("run-2")] == [1]


async def test_read_filters_by_step_and_resumes_after_a_seq(storage: Storage, version: str) -> None:
    await new_run(storage, version, "run-1")
    await storage.logs.append("run-1", [line(s, f"{s}{i}") for i in range(3) for s in "ab"])

    only_b = await storage.logs.read("run-1", step="b")
    assert [r.message for r in only_b] == ["b0", "b1", "b2"]
    after = await storage.logs.read("run-1", after_seq=4)
    assert [r.seq for r in after] == [5, 6]
    page = await storage.logs.read("run-1", step="a", after_seq=1, limit=1)
    assert [(r.seq, r.message) for r in page] == [(3, "a1")]
    assert await storage.logs.read("run-1", step="missing") == []
    assert await storage.logs.read("no-such-run") == []


async def test_concurrent_appends_to_one_run_keep_every_line(
    storage: Storage, version: str
) -> None:
    await new_run(storage, version, "run-1")
    await asyncio.gather(
        *(storage.logs.append("run-1", [line(f"s{i}", "x"), line(f"s{i}", "y")]) for i in range(4))
    )
    records = await storage.logs.read("run-1")
    assert [r.seq for r in records] == list(range(1, 9))
    by_step = {r.step: [x.message for x in records if x.step == r.step] for r in records}
    assert by_step == {f"s{i}": ["x", "y"] for i in range(4)}


async def test_unknown_run_and_bad_lines_are_refused(storage: Storage) -> None:
    with pytest.raises(UnknownRun):
        await storage.logs.append("no-such-run", [line("a", "x")])
    await storage.logs.append("no-such-run", [])  # nothing to write, nothing checked
    with pytest.raises(ValueError, match="log level"):
        NewLogLine("a", 1, datetime.now(UTC), "loud", "x", "connector")
    with pytest.raises(ValueError, match="naive"):
        NewLogLine("a", 1, datetime(2026, 1, 1), "info", "x", "connector")
