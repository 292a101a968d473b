"""The bus's delivery semantics, one suite run against both buses (in-process and NATS
JetStream): ack, redelivery after the ack wait, nak with delay, the delivery limit and its
dead letter, idempotent publishing, heartbeats, and replayable run events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest

from flowforge.runtime import Success
from flowforge.runtime.bus import Bus, BusSettings, ResultMessage, RunEvent, TaskMessage
from flowforge.runtime.bus.nats import NatsBus

from .conftest import BUS_KINDS, NATS_URL, SETTINGS, new_prefix, open_bus

ACK_WAIT = SETTINGS.ack_wait
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def task(step: str = "s1", attempt: int = 1, pool: str = "default") -> TaskMessage:
    return TaskMessage("run-1", step, attempt, pool, "ab" * 32, input='{"n":1}', traceparent=TRACE)


async def test_an_acked_task_is_delivered_once(bus: Bus) -> None:
    assert await bus.publish_task(task())
    tasks = await bus.tasks("default")
    delivery = await tasks.next(timeout=5)
    assert delivery is not None
    assert delivery.message == task()
    assert delivery.deliveries == 1
    assert delivery.traceparent == TRACE
    await delivery.ack()
    assert await tasks.next(timeout=ACK_WAIT * 1.5) is None


async def test_an_unacked_task_comes_back_after_the_ack_wait(bus: Bus) -> None:
    await bus.publish_task(task())
    tasks = await bus.tasks("default")
    first = await tasks.next(timeout=5)
    assert first is not None
    taken = time.monotonic()
    again = await tasks.next(timeout=ACK_WAIT * 4)
    assert again is not None, "the task was not redelivered"
    assert time.monotonic() - taken >= ACK_WAIT * 0.8
    assert again.message == task()
    assert again.deliveries == 2
    await again.ack()


async def test_nak_with_a_delay_redelivers_after_the_delay(bus: Bus) -> None:
    await bus.publish_task(task())
    tasks = await bus.tasks("default")
    first = await tasks.next(timeout=5)
    assert first is not None
    naked = time.monotonic()
    await first.nak(0.6)
    assert await tasks.next(timeout=0.3) is None
    again = await tasks.next(timeout=5)
    assert again is not None
    assert time.monotonic() - naked >= 0.5
    assert again.deliveries == 2
    await again.ack()


async def test_after_max_deliver_the_task_is_a_dead_letter_with_its_reason(bus: Bus) -> None:
    await bus.publish_task(task())
    tasks = await bus.tasks("default")
    for n in range(1, SETTINGS.max_deliver + 1):
        delivery = await tasks.next(timeout=5)
        assert delivery is not None
        assert delivery.deliveries == n
        await delivery.nak()
    assert await tasks.next(timeout=0.5) is None
    letters = await bus.dead_letters()
    letter = await letters.next(timeout=5)
    assert letter is not None
    dead = letter.message
    assert dead.msg_id == "run-1/s1/1"
    assert (dead.run_id, dead.step_id, dead.pool) == ("run-1", "s1", "default")
    assert dead.task == task()
    assert dead.deliveries == SETTINGS.max_deliver
    assert f"delivered {SETTINGS.max_deliver} times (the limit) without being acknowledged" in (
        dead.reason
    )
    await letter.ack()
    assert await letters.next(timeout=0.3) is None
    assert await tasks.next(timeout=0.3) is None


async def test_an_expired_ack_wait_counts_towards_the_limit(bus: Bus) -> None:
    await bus.publish_task(task())
    tasks = await bus.tasks("default")
    for _ in range(SETTINGS.max_deliver):
        assert await tasks.next(timeout=ACK_WAIT * 4) is not None  # never settled
    assert await tasks.next(timeout=ACK_WAIT * 1.5) is None
    letter = await (await bus.dead_letters()).next(timeout=5)
    assert letter is not None
    assert "without being acknowledged" in letter.message.reason
    assert f"{ACK_WAIT:g} s" in letter.message.reason
    await letter.ack()


async def test_term_dead_letters_at_once_with_the_consumers_reason(bus: Bus) -> None:
    await bus.publish_task(task())
    tasks = await bus.tasks("default")
    delivery = await tasks.next(timeout=5)
    assert delivery is not None
    await delivery.term("the package digest is malformed")
    letter = await (await bus.dead_letters()).next(timeout=5)
    assert letter is not None
    assert letter.message.reason == "terminated by its consumer: the package digest is malformed"
    assert letter.message.deliveries == 1
    await letter.ack()
    assert await tasks.next(timeout=ACK_WAIT * 1.5) is None


async def test_publishing_the_same_id_twice_delivers_once(bus: Bus) -> None:
    assert await bus.publish_task(task())
    assert not await bus.publish_task(task())
    assert await bus.publish_task(task(attempt=2))  # another attempt is another message
    tasks = await bus.tasks("default")
    got = []
    while (delivery := await tasks.next(timeout=0.5)) is not None:
        got.append(delivery.message.attempt)
        await delivery.ack()
    assert got == [1, 2]

    result = ResultMessage("run-1", "s1", 1, "w1", Success('{"a":1}'), 1.0, 2.0)
    assert await bus.publish_result(result)
    assert not await bus.publish_result(result)
    results = await bus.results()
    first = await results.next(timeout=5)
    assert first is not None
    assert first.message == result
    await first.ack()
    assert await results.next(timeout=0.5) is None


async def test_pools_are_separate_queues(bus: Bus) -> None:
    await bus.publish_task(task(pool="gpu"))
    cpu = await bus.tasks("default")
    gpu = await bus.tasks("gpu")
    assert await cpu.next(timeout=0.5) is None
    delivery = await gpu.next(timeout=5)
    assert delivery is not None
    assert delivery.message.pool == "gpu"
    await delivery.ack()


async def test_workers_of_a_pool_share_its_tasks(bus: Bus) -> None:
    for n in range(6):
        await bus.publish_task(task(step=f"s{n}"))
    a = await bus.tasks("default")
    b = await bus.tasks("default")
    seen = []
    for sub in (a, b, a, b, a, b):
        delivery = await sub.next(timeout=5)
        assert delivery is not None
        seen.append(delivery.message.step_id)
        await delivery.ack()
    assert sorted(seen) == [f"s{n}" for n in range(6)]
    assert await a.next(timeout=0.3) is None


async def test_heartbeats_keep_a_long_task_from_being_redelivered(bus: Bus) -> None:
    await bus.publish_task(task())
    holder = await bus.tasks("default")
    other = await bus.tasks("default")
    delivery = await holder.next(timeout=5)
    assert delivery is not None

    async def beat() -> None:
        while True:
            await asyncio.sleep(ACK_WAIT / 3)
            await delivery.in_progress()

    beating = asyncio.create_task(beat())
    try:
        # Three ack waits pass while the holder works: nobody else gets the task.
        assert await other.next(timeout=ACK_WAIT * 3) is None
    finally:
        beating.cancel()
    await delivery.ack()
    assert await other.next(timeout=ACK_WAIT * 1.5) is None


async def test_events_replay_from_a_seq_then_follow(bus: Bus) -> None:
    events = [RunEvent("run-7", n, "step-succeeded", {"n": n}, float(n)) for n in range(1, 6)]
    for event in events:
        assert await bus.publish_event(event)
    assert not await bus.publish_event(events[2])  # a republish is dropped
    replay = [e async for e in bus.events("run-7", 3, follow=False)]
    assert replay == events[2:]
    assert [e async for e in bus.events("run-none", 1, follow=False)] == []

    followed: list[RunEvent] = []

    async def follow() -> None:
        async for event in bus.events("run-7", 4):
            followed.append(event)
            if event.seq == 7:
                return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    later = [RunEvent("run-7", n, "run-succeeded", {}, float(n)) for n in (6, 7)]
    for event in later:
        await bus.publish_event(event)
    await asyncio.wait_for(watcher, 5)
    assert followed == [*events[3:], *later]


async def test_events_of_other_runs_are_not_mixed_in(bus: Bus) -> None:
    await bus.publish_event(RunEvent("run-a", 1, "run-started", {}, 1.0))
    await bus.publish_event(RunEvent("run-b", 1, "run-started", {"b": True}, 1.0))
    await bus.publish_event(RunEvent("run-a", 2, "run-succeeded", {}, 2.0))
    assert [(e.run_id, e.seq) async for e in bus.events("run-a", follow=False)] == [
        ("run-a", 1),
        ("run-a", 2),
    ]


@pytest.fixture(params=BUS_KINDS)
async def slow_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Each bus with an ack wait far longer than any wait in the test: what comes back
    within the test was given back, not redelivered after the ack wait."""
    settings = BusSettings(ack_wait=60.0, max_deliver=3, duplicate_window=60.0)
    opened = await open_bus(request.param, new_prefix(), settings)
    yield opened
    if isinstance(opened, NatsBus):
        await opened.delete_streams()
    await opened.close()


async def test_a_subscription_holds_no_more_than_its_room_and_gives_back_the_rest(
    slow_bus: Bus,
) -> None:
    steps = [f"s{n}" for n in range(5)]
    for step in steps:
        await slow_bus.publish_task(task(step))
    holder = await slow_bus.tasks("default")
    other = await slow_bus.tasks("default")
    first = await holder.next(timeout=5, room=2)
    assert first is not None
    taken = [first.message.step_id]
    while (delivery := await other.next(timeout=0.5)) is not None:
        taken.append(delivery.message.step_id)
        await delivery.ack()
    assert len(taken) >= 4, "the holder took more than its room of two"
    await first.ack()
    # What the holder took and never handed out goes back when it closes, not after the
    # ack wait.
    await holder.close()
    while (delivery := await other.next(timeout=2)) is not None:
        taken.append(delivery.message.step_id)
        await delivery.ack()
    assert sorted(taken) == steps


async def test_a_waiting_pull_outlives_its_consumer_being_deleted(nats_prefix: str) -> None:
    bus = await open_bus("nats", nats_prefix)
    assert isinstance(bus, NatsBus)
    try:
        tasks = await bus.tasks("default")
        waiting = asyncio.create_task(tasks.next(timeout=10))
        await asyncio.sleep(0.3)  # the pull request is with the server
        admin = await nats.connect(NATS_URL)
        try:
            await admin.jetstream().delete_consumer(bus.stream_name("tasks"), "tasks-default")
        finally:
            await admin.close()
        await bus.publish_task(task())
        delivery = await waiting
        assert delivery is not None, "the consumer was not created again"
        assert delivery.message == task()
        await delivery.ack()
    finally:
        await bus.close()
