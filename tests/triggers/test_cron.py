"""Cron triggers with an injected clock: each tick fires once, across restarts and
between two managers on one database; after downtime only the latest missed tick fires;
and a real run starts from a tick and succeeds."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from flowforge.control.storage import RunStatus, Storage
from flowforge.control.triggers import CronKey, CronSchedule, TriggerManager, TriggerStore

from .conftest import (
    FakeClock,
    OpenEngine,
    Packages,
    Recorder,
    engine_start_run,
    store_workflow,
    until,
)

EVERY_5 = {"type": "cron", "schedule": "*/5 * * * *", "input": {"n": 1}}


def manager(storage: Storage, recorder: Recorder, clock: FakeClock) -> TriggerManager:
    return TriggerManager(storage, recorder, clock=clock, refresh_every=None)


async def fired(recorder: Recorder, count: int) -> None:
    await until(lambda: len(recorder.calls) >= count, 10, f"{count} cron runs")


def test_the_schedule_is_read_in_its_time_zone() -> None:
    paris = CronSchedule("0 9 * * *", "Europe/Paris")
    winter = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
    assert paris.next_after(winter) == datetime(2025, 1, 11, 8, 0, tzinfo=UTC)
    summer = datetime(2025, 7, 10, 12, 0, tzinfo=UTC)
    assert paris.next_after(summer) == datetime(2025, 7, 11, 7, 0, tzinfo=UTC)
    assert paris.latest_at_or_before(summer) == datetime(2025, 7, 10, 7, 0, tzinfo=UTC)
    # A tick is "at or before" itself, and "after" means strictly after.
    tick = datetime(2025, 7, 10, 7, 0, tzinfo=UTC)
    assert paris.latest_at_or_before(tick) == tick
    assert paris.next_after(tick) == datetime(2025, 7, 11, 7, 0, tzinfo=UTC)
    every_5 = CronSchedule("*/5 * * * *")
    start = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
    assert every_5.count_between(start, start + timedelta(hours=1)) == 11


async def test_each_tick_starts_one_run_with_the_trigger_input(
    storage: Storage, recorder: Recorder
) -> None:
    version = await store_workflow(storage, "nightly", [EVERY_5])
    clock = FakeClock(version.created_at)
    schedule = CronSchedule("*/5 * * * *")
    async with manager(storage, recorder, clock):
        await until(lambda: clock.idle(1), 10, "the cron task to sleep")
        assert recorder.calls == []  # no tick since the version was stored
        first = schedule.next_after(clock.now())
        await clock.advance_to(first)
        await fired(recorder, 1)
        second = schedule.next_after(first)
        await clock.advance_to(second + timedelta(seconds=10))
        await fired(recorder, 2)
        await until(lambda: clock.idle(1), 10, "the cron task to sleep again")
    assert [c.trigger["tick"] for c in recorder.calls] == [first.isoformat(), second.isoformat()]
    call = recorder.calls[0]
    assert (call.project, call.workflow, call.version) == ("default", "nightly", version.version)
    assert call.input == {"n": 1}
    assert call.trigger == {
        "type": "cron",
        "schedule": "*/5 * * * *",
        "timezone": "UTC",
        "tick": first.isoformat(),
        "missed": 0,
    }
    ticks = await TriggerStore(storage.db).ticks()
    stored = ticks[CronKey("default", "nightly", 0)]
    assert (stored.last_tick, stored.run_id) == (second, "run-2")


async def test_a_restarted_manager_does_not_fire_a_tick_again(
    storage: Storage, recorder: Recorder
) -> None:
    version = await store_workflow(storage, "nightly", [EVERY_5])
    clock = FakeClock(version.created_at)
    tick = CronSchedule("*/5 * * * *").next_after(clock.now())
    await clock.advance_to(tick)
    async with manager(storage, recorder, clock):
        await fired(recorder, 1)
        await until(lambda: clock.idle(1), 10, "the cron task to sleep")
    # Same instant, new manager (a restart): the tick is claimed already.
    async with manager(storage, recorder, clock):
        await until(lambda: clock.idle(1), 10, "the restarted cron task to sleep")
    assert len(recorder.calls) == 1


async def test_two_managers_on_one_database_fire_a_tick_once(
    storage: Storage, recorder: Recorder
) -> None:
    version = await store_workflow(storage, "nightly", [EVERY_5])
    clock = FakeClock(version.created_at)
    schedule = CronSchedule("*/5 * * * *")
    async with manager(storage, recorder, clock), manager(storage, recorder, clock):
        await until(lambda: clock.idle(2), 10, "both cron tasks to sleep")
        for _ in range(3):
            await clock.advance_to(schedule.next_after(clock.now()))
            await until(lambda: clock.idle(2), 10, "both cron tasks to handle the tick")
    assert len(recorder.calls) == 3
    assert len({c.trigger["tick"] for c in recorder.calls}) == 3


async def test_after_downtime_only_the_latest_missed_tick_fires(
    storage: Storage, recorder: Recorder
) -> None:
    version = await store_workflow(storage, "nightly", [EVERY_5])
    clock = FakeClock(version.created_at)
    schedule = CronSchedule("*/5 * * * *")
    first = schedule.next_after(clock.now())
    await clock.advance_to(first)
    async with manager(storage, recorder, clock):
        await fired(recorder, 1)
    # Down for an hour and a bit: twelve ticks pass unseen.
    back = first + timedelta(hours=1, minutes=2)
    await clock.advance_to(back)
    async with manager(storage, recorder, clock):
        await fired(recorder, 2)
        await until(lambda: clock.idle(1), 10, "the cron task to sleep")
    assert len(recorder.calls) == 2
    latest = schedule.latest_at_or_before(back)
    assert recorder.calls[1].trigger["tick"] == latest.isoformat()
    assert recorder.calls[1].trigger["missed"] == 11


async def test_a_new_schedule_does_not_fire_for_a_tick_before_its_version(
    storage: Storage, recorder: Recorder
) -> None:
    version = await store_workflow(storage, "report", [{"type": "cron", "schedule": "@daily"}])
    clock = FakeClock(version.created_at)
    async with manager(storage, recorder, clock) as triggers:
        await until(lambda: clock.idle(1), 10, "the cron task to sleep")
        hourly = {"type": "cron", "schedule": "@hourly"}
        newer = await store_workflow(storage, "report", [hourly])
        await clock.advance_to(newer.created_at)
        await triggers.refresh()
        await until(lambda: clock.idle(1), 10, "the new cron task to sleep")
        assert recorder.calls == []
        runner = triggers.cron_runner(CronKey("default", "report", 0))
        assert runner is not None and runner.trigger.version == newer.version
        await clock.advance_to(CronSchedule("@hourly").next_after(clock.now()))
        await fired(recorder, 1)
    assert recorder.calls[0].version == newer.version


async def test_a_refused_start_is_logged_and_the_next_tick_tries_again(
    storage: Storage, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    version = await store_workflow(storage, "nightly", [EVERY_5])
    clock = FakeClock(version.created_at)
    schedule = CronSchedule("*/5 * * * *")
    recorder.refuse = "input does not match the workflow's inputs"
    with caplog.at_level(logging.ERROR, logger="flowforge.triggers"):
        async with manager(storage, recorder, clock):
            await until(lambda: clock.idle(1), 10, "the cron task to sleep")
            await clock.advance_to(schedule.next_after(clock.now()))
            await until(
                lambda: "the run did not start" in caplog.text, 10, "the refusal to be logged"
            )
            await until(lambda: clock.idle(1), 10, "the cron task to sleep")
            recorder.refuse = None
            await clock.advance_to(schedule.next_after(clock.now()))
            await fired(recorder, 1)
    assert "input does not match the workflow's inputs" in caplog.text


ECHO = """
name: cron-echo
triggers:
  - type: cron
    schedule: "*/5 * * * *"
    input: {n: 42}
steps:
  only:
    uses: acme/echo@^1
    input: {got: "${{ inputs.n }}"}
"""


async def test_a_tick_starts_a_real_run_that_succeeds(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    workflow = packages.workflow(ECHO)
    await engine.catalog.put(workflow)
    stored = await engine.storage.versions.get(workflow.version)
    clock = FakeClock(stored.created_at)
    seen: list[dict[str, object]] = []
    start_run = engine_start_run(engine, seen)
    async with TriggerManager(engine.storage, start_run, clock=clock, refresh_every=None) as m:
        await until(lambda: clock.idle(1), 10, "the cron task to sleep")
        await clock.advance_to(CronSchedule("*/5 * * * *").next_after(clock.now()))
        runner = m.cron_runner(CronKey("default", "cron-echo", 0))
        assert runner is not None
        await until(lambda: bool(runner.fired), 10, "the run to start")
        result = await asyncio.wait_for(engine.scheduler.wait(runner.fired[0]), 30)
    assert result.state.status is RunStatus.SUCCEEDED, result.state.error
    assert result.state.outputs == {"only": {"got": 42}}
    assert seen[0]["type"] == "cron"
