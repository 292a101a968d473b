"""The run event log: ordered appends, optimistic concurrency, idempotency, the cached
status, listing and resume, and timers; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from flowforge.control.storage import (
    ConcurrencyConflict,
    DuplicateRun,
    EventType,
    NewEvent,
    RunFinished,
    RunState,
    RunStatus,
    Storage,
    Timer,
    TimerKind,
    UnknownRun,
)
from flowforge.control.storage.events import AppendRequest
from tests.control.storage.conftest import CANONICAL, VERSION
from tests.pg import admin, fresh_database

E = EventType


def started(*steps: str) -> NewEvent:
    return NewEvent(E.RUN_STARTED, {"steps": list(steps), "inputs": {"n": 1}})


def step(kind: EventType, step_id: str, key: str | None = None, **data: object) -> NewEvent:
    return NewEvent(kind, {"step": step_id, **data}, key=key)


async def new_run(storage: Storage, version: str, run_id: str = "run-1", *steps: str) -> None:
    await storage.events.create_run(
        run_id,
        workflow="demo",
        version=version,
        project="default",
        input={"n": 1},
        events=[started(*steps)],
    )


async def test_appends_are_numbered_and_read_back_in_order(storage: Storage, version: str) -> None:
    await new_run(storage, version, "run-1", "a", "b")
    events = storage.events
    appended = await events.append(
        "run-1",
        1,
        [step(E.STEP_DISPATCHED, "a", attempt=1), step(E.STEP_DISPATCHED, "b", attempt=1)],
    )
    assert appended.last_seq == 3
    assert [e.seq for e in appended.events] == [2, 3]
    await events.append("run-1", 3, [step(E.STEP_SUCCEEDED, "a", output={"x": [1, "é"]})])

    log = await events.read("run-1")
    assert [(e.seq, e.type) for e in log] == [
        (1, E.RUN_STARTED),
        (2, E.STEP_DISPATCHED),
        (3, E.STEP_DISPATCHED),
        (4, E.STEP_SUCCEEDED),
    ]
    assert log[3].data == {"step": "a", "output": {"x": [1, "é"]}}
    assert all(e.at.tzinfo is not None for e in log)
    assert [e.seq for e in await events.read("run-1", after_seq=2)] == [3, 4]
    assert [e.seq for e in await events.read("run-1", after_seq=1, limit=2)] == [2, 3]
    assert await events.read("nope") == []


async def test_a_stale_expected_seq_is_refused_and_writes_nothing(
    storage: Storage, version: str
) -> None:
    await new_run(storage, version)
    await storage.events.append("run-1", 1, [step(E.STEP_DISPATCHED, "a")])
    with pytest.raises(ConcurrencyConflict) as caught:
        await storage.events.append("run-1", 1, [step(E.STEP_DISPATCHED, "b")])
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert "expected last seq 1, the log is at 2" in str(caught.value)
    with pytest.raises(ConcurrencyConflict):  # ahead of the log: also refused
        await storage.events.append("run-1", 7, [step(E.STEP_DISPATCHED, "b")])
    assert [e.seq for e in await storage.events.read("run-1")] == [1, 2]
    with pytest.raises(UnknownRun):
        await storage.events.append("ghost", 0, [started()])


async def test_a_redelivered_result_is_applied_once(storage: Storage, version: str) -> None:
    await new_run(storage, version, "run-1", "a")
    events = storage.events
    await events.append("run-1", 1, [step(E.STEP_DISPATCHED, "a", key="dispatch/a/1")])
    result = step(E.STEP_SUCCEEDED, "a", key="result/a/1", output=1)
    first = await events.append("run-1", 2, [result])
    assert first.last_seq == 3 and first.duplicates == ()
    # The same result again, even with the seq the first delivery saw: dropped, no conflict.
    again = await events.append("run-1", 2, [result])
    assert (again.last_seq, again.events, again.duplicates) == (3, (), ("result/a/1",))
    # Mixed with new events, only the new ones are stored; a key repeated in one batch
    # counts once.
    mixed = await events.append(
        "run-1",
        3,
        [result, NewEvent(E.RUN_SUCCEEDED, key="end"), NewEvent(E.RUN_SUCCEEDED, key="end")],
    )
    assert [e.type for e in mixed.events] == [E.RUN_SUCCEEDED]
    assert mixed.duplicates == ("result/a/1", "end")
    assert [e.type for e in await events.read("run-1")].count(E.STEP_SUCCEEDED) == 1


async def test_concurrent_appenders_never_share_a_seq(storage: Storage, version: str) -> None:
    """Many writers race on one run; each retries on conflict. Every event lands once, the
    log has no gaps, and redelivered keys are dropped."""
    await new_run(storage, version)
    events = storage.events
    together = asyncio.Barrier(24)

    async def writer(n: int) -> int:
        conflicts = 0
        while True:
            last = (await events.run("run-1")).last_seq
            if conflicts == 0:  # every first try starts from the same seq: they race
                await together.wait()
            try:
                await events.append("run-1", last, [step(E.STEP_DISPATCHED, f"s{n}", key=f"d/{n}")])
                return conflicts
            except ConcurrencyConflict:
                conflicts += 1
                await asyncio.sleep(random.random() / 1000)

    conflicts = await asyncio.gather(*(writer(n % 12) for n in range(24)))
    log = await events.read("run-1")
    assert [e.seq for e in log] == list(range(1, 14))  # run-started + 12 distinct keys
    assert sorted(e.data["step"] for e in log[1:]) == sorted(f"s{n}" for n in range(12))
    assert sum(conflicts) > 0  # they did race


async def test_create_run_is_atomic_and_unique(storage: Storage, version: str) -> None:
    await new_run(storage, version)
    with pytest.raises(DuplicateRun, match="already exists"):
        await new_run(storage, version)
    # A first batch that breaks (an unknown seq can't happen; a bad timer can) leaves no run.
    with pytest.raises(ValueError, match="is for run"):
        await storage.events.create_run(
            "run-2",
            workflow="demo",
            version=version,
            project="p",
            input=None,
            events=[started()],
            timers=[Timer("other", "t", TimerKind.RUN_DEADLINE, datetime.now(UTC))],
        )
    with pytest.raises(UnknownRun):
        await storage.events.run("run-2")


async def test_cached_status_follows_the_events(storage: Storage, version: str) -> None:
    events = storage.events
    await events.create_run("r", workflow="demo", version=version, project="p", input={})
    assert (await events.run("r")).status is RunStatus.PENDING
    await events.append("r", 0, [started("a", "gate")])
    assert (await events.run("r")).status is RunStatus.RUNNING
    await events.append("r", 1, [step(E.APPROVAL_REQUESTED, "gate")])
    record = await events.run("r")
    assert record.status is RunStatus.WAITING_APPROVAL
    assert record.waiting_approval == ("gate",)
    await events.append("r", 2, [step(E.APPROVAL_GRANTED, "gate", by="ada")])
    assert (await events.run("r")).status is RunStatus.RUNNING
    await events.append("r", 3, [NewEvent(E.RUN_FAILED, {"error": "boom"})])
    record = await events.run("r")
    assert record.status is RunStatus.FAILED and record.finished_at is not None
    with pytest.raises(RunFinished, match="has finished"):
        await events.append("r", 4, [step(E.STEP_DISPATCHED, "a")])


async def test_cached_status_equals_the_fold(storage: Storage, version: str) -> None:
    """Random histories, appended in random batches: the listed status is the fold's."""
    rng = random.Random(7)
    kinds = [k for k in EventType if k is not E.RUN_STARTED]
    for n in range(6):
        run_id = f"r{n}"
        await storage.events.create_run(
            run_id, workflow="demo", version=version, project="p", input=None
        )
        last = 0
        status = RunStatus.PENDING
        while not status.finished and last < 40:
            batch: list[NewEvent] = []
            for _ in range(rng.randint(1, 3)):
                kind = rng.choice(kinds) if last or batch else E.RUN_STARTED
                batch.append(NewEvent(kind, {"step": rng.choice("abc")}))
            last = (await storage.events.append(run_id, last, batch)).last_seq
            record = await storage.events.run(run_id)
            folded = RunState.fold(await storage.events.read(run_id))
            assert record.status is folded.status
            assert set(record.waiting_approval) == folded.waiting_approval
            status = record.status


async def test_listing_pages_newest_first_and_filters(storage: Storage, version: str) -> None:
    events = storage.events
    for n in range(7):
        await new_run(storage, version, f"run-{n}")
    await events.append("run-2", 1, [NewEvent(E.RUN_SUCCEEDED)])
    await events.append("run-5", 1, [NewEvent(E.RUN_CANCELLED, {"reason": "user"})])

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await events.runs(limit=3, cursor=cursor)
        seen += [r.id for r in page.runs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"run-{n}" for n in reversed(range(7))]

    running = await events.runs(status=RunStatus.RUNNING, limit=100)
    assert {r.id for r in running.runs} == {f"run-{n}" for n in (0, 1, 3, 4, 6)}
    done = await events.runs(status=[RunStatus.SUCCEEDED, RunStatus.CANCELLED])
    assert {r.id for r in done.runs} == {"run-2", "run-5"}
    assert (await events.runs(project="nope")).runs == ()
    assert [r.id for r in await events.unfinished_runs()] == [f"run-{n}" for n in (0, 1, 3, 4, 6)]
    with pytest.raises(ValueError, match="cursor"):
        await events.runs(cursor="garbage!")


async def test_timers_are_set_moved_cleared_and_dropped_at_the_end(
    storage: Storage, version: str
) -> None:
    await new_run(storage, version, "run-1", "a")
    events = storage.events
    now = datetime.now(UTC).replace(microsecond=0)
    retry = Timer("run-1", "retry/a", TimerKind.RETRY, now + timedelta(seconds=5), {"step": "a"})
    deadline = Timer("run-1", "deadline", TimerKind.RUN_DEADLINE, now + timedelta(hours=1))
    await events.append(
        "run-1",
        1,
        [step(E.STEP_RETRY_SCHEDULED, "a", attempt=1, error={"kind": "unavailable"})],
        set_timers=[retry, deadline],
    )
    assert await events.timers("run-1") == [retry, deadline]
    assert await events.due_timers(now) == []
    assert await events.due_timers(now + timedelta(seconds=5)) == [retry]
    assert await events.next_timer() == retry

    moved = Timer("run-1", "retry/a", TimerKind.RETRY, now + timedelta(seconds=9), {"step": "a"})
    await events.append("run-1", 2, [], set_timers=[moved])
    assert await events.timers("run-1") == [moved, deadline]
    await events.append("run-1", 2, [step(E.STEP_DISPATCHED, "a")], clear_timers=["retry/a"])
    assert await events.timers("run-1") == [deadline]
    await events.append("run-1", 3, [NewEvent(E.RUN_SUCCEEDED)])
    assert await events.timers("run-1") == []
    assert await events.next_timer() is None


async def test_a_finished_run_keeps_no_timers_whichever_way_it_is_written(
    storage: Storage, version: str
) -> None:
    # Alone, in a group, and told what the row holds (PostgreSQL's one statement) or not.
    now = datetime.now(UTC).replace(microsecond=0)
    running = RunStatus.RUNNING
    ways = {
        "run-lone-told": [AppendRequest("run-lone-told", 2, [], stored_status=running)],
        "run-lone": [AppendRequest("run-lone", 2, [])],
        "run-group-told": [
            AppendRequest("run-group-told", 2, [], stored_status=running),
            AppendRequest("run-group", 2, []),
        ],
    }
    for run_id in ("run-lone-told", "run-lone", "run-group-told", "run-group"):
        await new_run(storage, version, run_id, "a")
        deadline = Timer(run_id, "deadline", TimerKind.RUN_DEADLINE, now + timedelta(hours=1))
        go = step(E.STEP_DISPATCHED, "a", f"dispatch/{run_id}", attempt=1)
        await storage.events.append(run_id, 1, [go], set_timers=[deadline])
    for group in ways.values():
        finished = [
            dataclasses.replace(r, events=[NewEvent(E.RUN_SUCCEEDED, key=f"end/{r.run_id}")])
            for r in group
        ]
        for outcome in await storage.events.append_many(finished):
            assert not isinstance(outcome, Exception) and outcome.last_seq == 3
    for run_id in ("run-lone-told", "run-lone", "run-group-told", "run-group"):
        assert (await storage.events.run(run_id)).status is RunStatus.SUCCEEDED
        assert await storage.events.timers(run_id) == [], run_id
    assert await storage.events.next_timer() is None


async def test_an_append_survives_the_server_dropping_its_connection() -> None:
    # PostgreSQL only: SQLite has no server to drop a connection.
    with fresh_database("ff_dropped") as url:
        storage = await Storage.open(url)
        try:
            await storage.versions.put("demo", VERSION, CANONICAL)
            await new_run(storage, VERSION, "run-1", "a")
            database = storage.db.engine.url.database
            # Every backend of this database goes, as in a server restart: the appends' own
            # connection included, which must be replaced rather than fail the next append.
            admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )
            step_a = step(E.STEP_DISPATCHED, "a", attempt=1)
            appended = await storage.events.append("run-1", 1, [step_a])
            assert appended.last_seq == 2
            assert [e.seq for e in await storage.events.read("run-1")] == [1, 2]
        finally:
            await storage.close()


async def test_an_append_larger_than_one_statement_holds_is_stored_whole(
    storage: Storage, version: str
) -> None:
    # 400 events of 6 values each: several statements on SQLite (999 values at most).
    await new_run(storage, version, "run-1", *(f"s{i}" for i in range(400)))
    many = [step(E.STEP_DISPATCHED, f"s{i}", f"dispatch/s{i}/1", attempt=1) for i in range(400)]
    appended = await storage.events.append("run-1", 1, many)
    assert appended.last_seq == 401
    log = await storage.events.read("run-1")
    assert [e.seq for e in log] == list(range(1, 402))
    assert [e.key for e in log[1:]] == [f"dispatch/s{i}/1" for i in range(400)]


async def test_a_group_with_a_redelivered_result_stores_the_rest_and_drops_it(
    storage: Storage, version: str
) -> None:
    await new_run(storage, version, "run-1", "a")
    await new_run(storage, version, "run-2", "a")
    done = step(E.STEP_SUCCEEDED, "a", "result/a/1", attempt=1, output={})
    await storage.events.append("run-2", 1, [done])
    # run-2's result again, at its current seq: the key is what says it is stored.
    again = AppendRequest("run-2", 2, [done])
    fresh = AppendRequest("run-1", 1, [done])
    first, second = await storage.events.append_many([fresh, again])
    assert not isinstance(first, Exception) and first.last_seq == 2
    assert not isinstance(second, Exception)
    assert (second.last_seq, second.events, second.duplicates) == (2, (), ("result/a/1",))
    assert [e.seq for e in await storage.events.read("run-1")] == [1, 2]
    assert [e.seq for e in await storage.events.read("run-2")] == [1, 2]


async def test_an_append_that_says_what_the_run_holds_is_stored_only_if_it_is_right(
    storage: Storage, version: str
) -> None:
    await new_run(storage, version, "run-1", "a", "b")
    await new_run(storage, version, "run-2", "a", "b")
    running = RunStatus.RUNNING
    go = step(E.STEP_DISPATCHED, "a", "dispatch/a/1", attempt=1)
    # Right: run-started moved the run to running and nothing waits.
    [right] = await storage.events.append_many(
        [AppendRequest("run-1", 1, [go], stored_status=running)]
    )
    assert not isinstance(right, Exception) and right.last_seq == 2
    # Wrong (it believes a step waits for approval): the store folds over what it holds.
    [wrong] = await storage.events.append_many(
        [AppendRequest("run-2", 1, [go], stored_status=running, stored_waiting=("b",))]
    )
    assert not isinstance(wrong, Exception) and wrong.last_seq == 2
    for run_id in ("run-1", "run-2"):
        record = await storage.events.run(run_id)
        assert (record.status, record.waiting_approval, record.last_seq) == (running, (), 2)
    # A stale seq is a conflict, and a redelivery (its key stored) is a duplicate.
    go_b = step(E.STEP_DISPATCHED, "b", "dispatch/b/1", attempt=1)
    [stale] = await storage.events.append_many(
        [AppendRequest("run-1", 1, [go_b], stored_status=running)]
    )
    assert isinstance(stale, ConcurrencyConflict)
    [again] = await storage.events.append_many(
        [AppendRequest("run-1", 2, [go], stored_status=running)]
    )
    assert not isinstance(again, Exception) and again.duplicates == ("dispatch/a/1",)
    assert [e.seq for e in await storage.events.read("run-1")] == [1, 2]


async def test_a_group_claims_the_runs_whose_rows_hold_what_it_says_and_checks_the_rest(
    storage: Storage, version: str
) -> None:
    running = RunStatus.RUNNING
    for n in range(6):
        await new_run(storage, version, f"run-{n}", "a", "b")
    go = step(E.STEP_DISPATCHED, "a", "dispatch/a/1", attempt=1)
    await storage.events.append("run-4", 1, [go])
    await storage.events.append("run-5", 1, [go])
    outcomes = await storage.events.append_many(
        [
            AppendRequest("run-0", 1, [go], stored_status=running),  # right
            AppendRequest("run-1", 1, [go], stored_status=running, stored_waiting=("b",)),
            AppendRequest("run-2", 1, [go]),  # says nothing: checked
            AppendRequest("run-3", 0, [go], stored_status=running),  # stale
            AppendRequest("run-4", 2, [go], stored_status=running),  # its key is stored
            AppendRequest("run-5", 1, [go], stored_status=running),  # stale, key stored
            AppendRequest("run-0", 2, [step(E.STEP_DISPATCHED, "b")], stored_status=running),
        ]
    )
    seqs = [None if isinstance(o, Exception) else o.last_seq for o in outcomes]
    assert seqs == [2, 2, 2, None, 2, 2, 3]
    assert isinstance(outcomes[3], ConcurrencyConflict)
    for duplicate in (outcomes[4], outcomes[5]):
        assert not isinstance(duplicate, Exception) and duplicate.duplicates == ("dispatch/a/1",)
    for n, last in enumerate([3, 2, 2, 1, 2, 2]):
        record = await storage.events.run(f"run-{n}")
        assert (record.last_seq, record.status, record.waiting_approval) == (last, running, ())
        assert [e.seq for e in await storage.events.read(f"run-{n}")] == list(range(1, last + 1))


async def test_two_writers_of_overlapping_groups_never_deadlock(
    storage: Storage, version: str, db_url: str
) -> None:
    # Each group claims its runs (and locks the others') in one statement: in id order,
    # whatever order the groups list them in, so neither can wait for the other forever.
    run_ids = [f"run-{n:02d}" for n in range(16)]
    for run_id in run_ids:
        await new_run(storage, version, run_id, "a")
    second = await Storage.open(db_url)
    try:

        async def write(store: Storage, order: list[str], writer: str) -> list[object]:
            seen: list[object] = []
            for round_ in range(10):
                group = [
                    AppendRequest(
                        r,
                        (await store.events.run(r)).last_seq,
                        [step(E.STEP_DISPATCHED, "a", f"{writer}/{round_}/{r}")],
                        stored_status=RunStatus.RUNNING if n % 2 else None,
                    )
                    for n, r in enumerate(order)
                ]
                seen += await store.events.append_many(group)
            return seen

        results = await asyncio.gather(
            write(storage, run_ids, "one"), write(second, run_ids[::-1], "two")
        )
    finally:
        await second.close()
    for outcome in (o for found in results for o in found):
        assert not isinstance(outcome, Exception) or isinstance(outcome, ConcurrencyConflict)
    for run_id in run_ids:
        log = await storage.events.read(run_id)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
