"""Deadlines and limits, end to end: a step's timeout (the sandbox stops a step that runs
past it; the scheduler gives up on a worker that holds a task past it without answering),
the run-level timeout, and the run-level concurrency limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from flowforge.control.scheduler import PackageFolders, Scheduler, VersionCatalog
from flowforge.control.storage import Event, EventType, RunStatus, StepStatus, Storage
from flowforge.runtime import Success
from flowforge.runtime.bus import InProcessBus, ResultMessage

from .conftest import SETTINGS, OpenEngine, Packages, spin_config

SPIN = """
name: %(name)s
%(run_options)s
steps:
  slow:
    uses: acme/spin@^1
    with: {pad: "%(pad)s"}
    input: {n: "${{ inputs.n }}"}
    %(step_options)s
  after:
    uses: acme/echo@^1
    input: {got: "${{ steps.slow.output.n }}"}
"""


def spin_workflow(
    packages: Packages,
    seconds: float,
    *,
    name: str = "spin",
    run_options: str = "",
    step_options: str = "",
) -> str:
    return SPIN % {
        "name": name,
        "pad": spin_config(seconds)["pad"],
        "run_options": run_options,
        "step_options": step_options,
    }


def _types(events: list[Event]) -> list[EventType]:
    return [e.type for e in events]


async def test_a_step_running_past_its_timeout_fails_with_kind_timeout(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    text = spin_workflow(packages, 5.0, step_options="timeout: 300ms")
    result = await asyncio.wait_for(engine.run(packages.workflow(text), {"n": 1}), 20)
    assert result.state.status is RunStatus.FAILED
    slow = result.state.steps["slow"]
    assert slow.status is StepStatus.FAILED
    assert slow.error["kind"] == "timeout", slow.error
    assert "0.3 s" in slow.error["message"]
    assert result.state.error["kind"] == "timeout"
    assert result.state.steps["after"].status is StepStatus.PENDING


@pytest.fixture
async def bare_scheduler(packages: Packages, tmp_path: Path) -> AsyncIterator[Scheduler]:
    """A scheduler over the in-process bus with no worker: the test plays the worker."""
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
    catalog = VersionCatalog(storage, PackageFolders([packages.root / "packages"]))
    bus = InProcessBus(SETTINGS)
    # Half a second after the step's own timeout, the scheduler stops waiting.
    scheduler = Scheduler(storage, bus, catalog, step_grace_s=0.5, publish_events=False)
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
        await bus.close()
        await storage.close()


async def test_a_worker_holding_a_task_past_the_deadline_fails_the_step(
    packages: Packages, bare_scheduler: Scheduler
) -> None:
    scheduler = bare_scheduler
    version = packages.workflow(spin_workflow(packages, 5.0, step_options="timeout: 300ms"))
    tasks = await scheduler.bus.tasks("default")
    run_id = await scheduler.start_run(version, {"n": 2})
    # A worker takes the task and keeps it (heartbeats, so the bus does not hand it out
    # again) without ever answering: wedged, or on the far side of a partition.
    held = await tasks.next(timeout=5)
    assert held is not None and held.message.step_id == "slow"

    async def heartbeat() -> None:
        while True:
            await held.in_progress()
            await asyncio.sleep(SETTINGS.ack_wait / 4)

    beating = asyncio.create_task(heartbeat())
    try:
        result = await scheduler.wait(run_id, timeout=20)
    finally:
        beating.cancel()
    assert result.state.status is RunStatus.FAILED
    error = result.state.steps["slow"].error
    assert error["kind"] == "timeout", error
    assert "no result within 0.8 s of the dispatch" in error["message"]

    # The answer that finally comes is not applied: the attempt was given up on.
    late = ResultMessage(run_id, "slow", 1, "wedged", Success(held.message.input))
    await scheduler.bus.publish_result(late)
    await held.ack()
    await asyncio.sleep(0.3)
    events = await scheduler.storage.events.read(run_id)
    assert EventType.STEP_SUCCEEDED not in _types(events)
    assert _types(events)[-2:] == [EventType.STEP_FAILED, EventType.RUN_FAILED]
    await tasks.close()


async def test_the_run_timeout_ends_a_run_whose_step_is_still_running(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    text = spin_workflow(packages, 5.0, run_options="timeout: 500ms")
    result = await asyncio.wait_for(engine.run(packages.workflow(text), {"n": 3}), 20)
    assert result.state.status is RunStatus.FAILED
    assert result.state.error == {"kind": "timeout", "message": "the run's deadline (0.5 s) passed"}
    assert await engine.storage.events.timers(result.run_id) == []
    events = await engine.storage.events.read(result.run_id)
    assert EventType.STEP_SUCCEEDED not in _types(events)
    assert _types(events)[-1] is EventType.RUN_FAILED


def _most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at
    the same instant: one run handing its slot to the next is not an overlap)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _at, change in edges:
        current += change
        most = max(most, current)
    return most


async def test_the_concurrency_limit_holds_runs_back_until_a_slot_frees(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine(concurrency=4)  # the worker could run four at once
    text = spin_workflow(packages, 0.3, name="limited", run_options="concurrency: 2")
    version = packages.workflow(text)
    run_ids = [await engine.start_run(version, {"n": i}) for i in range(6)]
    results = await asyncio.wait_for(
        asyncio.gather(*(engine.scheduler.wait(r) for r in run_ids)), 60
    )
    intervals = []
    for i, result in enumerate(results):
        assert result.state.status is RunStatus.SUCCEEDED, result.state.error
        assert result.state.steps["after"].output == {"got": i}
        events = await engine.storage.events.read(result.run_id)
        first_dispatch = next(e.at for e in events if e.type is EventType.STEP_DISPATCHED)
        intervals.append((first_dispatch, events[-1].at))
    # At most two ran at once, and two did (the limit is a limit, not a queue of one).
    assert _most_at_once(intervals) == 2
    # The first two started were the first admitted.
    admitted = sorted(range(6), key=lambda i: intervals[i][0])
    assert set(admitted[:2]) == {0, 1}
