"""Group commit: several runs' appends in one transaction, each checked as a lone append
would be, a conflicting one reported alone while the others are written; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowforge.control.scheduler.group_commit import GroupCommit
from flowforge.control.storage import (
    ConcurrencyConflict,
    DuplicateRun,
    EventType,
    NewEvent,
    RunFinished,
    Storage,
)
from flowforge.control.storage.events import AppendRequest, new_run_row
from tests.pg import fresh_database

CANONICAL = b'{"group":"commit"}'
VERSION = hashlib.sha256(CANONICAL).hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "sqlite":
        opened = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}")
        await opened.versions.put("w", VERSION, CANONICAL)
        yield opened
        await opened.close()
        return
    with fresh_database("ff_group") as url:
        opened = await Storage.open(url)
        await opened.versions.put("w", VERSION, CANONICAL)
        yield opened
        await opened.close()


def _create(run_id: str) -> AppendRequest:
    row = new_run_row(run_id, workflow="w", version=VERSION, project="p", input={"n": 1})
    started = NewEvent(EventType.RUN_STARTED, {"steps": ["a"]})
    return AppendRequest(run_id, 0, [started], new_run=row)


def _dispatch(run_id: str, expected: int) -> AppendRequest:
    event = NewEvent(EventType.STEP_DISPATCHED, {"step": "a", "attempt": 1}, "dispatch/a/1")
    return AppendRequest(run_id, expected, [event])


async def test_a_group_writes_each_run_and_reports_a_conflict_in_its_place(
    storage: Storage,
) -> None:
    events = storage.events
    created = await events.append_many([_create("r-b"), _create("r-a"), _create("r-c")])
    assert [getattr(c, "last_seq", None) for c in created] == [1, 1, 1]

    done = NewEvent(EventType.RUN_SUCCEEDED, {"outputs": {}}, "run/end")
    outcomes = await events.append_many(
        [
            _dispatch("r-a", 1),
            _dispatch("r-b", 0),  # stale: r-b is at 1
            AppendRequest("r-c", 1, [done]),
        ]
    )
    assert getattr(outcomes[0], "last_seq", None) == 2
    assert isinstance(outcomes[1], ConcurrencyConflict)
    assert getattr(outcomes[2], "last_seq", None) == 2
    assert [e.type for e in await events.read("r-a")] == [
        EventType.RUN_STARTED,
        EventType.STEP_DISPATCHED,
    ]
    assert [e.type for e in await events.read("r-b")] == [EventType.RUN_STARTED]

    # A finished run refuses more; a repeated key is a no-op, as for a lone append.
    again = await events.append_many([_dispatch("r-c", 2), _dispatch("r-a", 1)])
    assert isinstance(again[0], RunFinished)
    assert getattr(again[1], "duplicates", None) == ("dispatch/a/1",)


async def test_a_duplicate_run_in_a_group_fails_alone(storage: Storage) -> None:
    await storage.events.append_many([_create("r-1")])
    outcomes = await storage.events.append_many([_create("r-1"), _create("r-2")])
    assert isinstance(outcomes[0], DuplicateRun)
    assert getattr(outcomes[1], "last_seq", None) == 1
    assert (await storage.events.run("r-2")).workflow == "w"


async def test_concurrent_appends_share_transactions_and_each_gets_its_own_answer(
    storage: Storage,
) -> None:
    group = GroupCommit(storage.events, max_group=8)
    run_ids = [f"r-{i:02d}" for i in range(20)]
    await asyncio.gather(*(group.append(_create(r)) for r in run_ids))
    other = NewEvent(EventType.STEP_DISPATCHED, {"step": "b", "attempt": 1}, "dispatch/b/1")
    appended = await asyncio.gather(
        *(group.append(_dispatch(r, 1)) for r in run_ids),
        group.append(AppendRequest("r-00", 1, [other])),  # queued after r-00's: stale
        return_exceptions=True,
    )
    assert [getattr(a, "last_seq", None) for a in appended[:20]] == [2] * 20
    assert isinstance(appended[20], ConcurrencyConflict)
    for run_id in run_ids:
        assert (await storage.events.run(run_id)).last_seq == 2
    await group.close()
