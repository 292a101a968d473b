"""The in-process bus: the embedded mode's transport, with the semantics of the NATS one.

Everything runs on one event loop and hands message objects over without encoding them:
this is the path whose budget is under a millisecond per step. Timers (ack wait, nak
delays) are loop callbacks, so a delivery that is never settled comes back exactly as it
would from JetStream.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Generic

from .base import BusError, BusSettings, Delivery, M, Subscription
from .messages import DeadLetter, ResultMessage, RunEvent, TaskMessage, check_token


class _Dedupe:
    """Message ids seen within the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, msg_id: str) -> bool:
        """Whether `msg_id` was seen within the window; records it when it was not."""
        now = time.monotonic()
        horizon = now - self.window
        seen = self._seen
        while seen:
            oldest, at = next(iter(seen.items()))
            if at > horizon:
                break
            del seen[oldest]
        if msg_id in seen:
            return True
        seen[msg_id] = now
        return False


class _Entry(Generic[M]):
    """A queued message and where it is in its life."""

    __slots__ = ("deliveries", "generation", "message", "msg_id", "settled", "timer", "trace")

    def __init__(self, message: M, msg_id: str, trace: str | None) -> None:
        self.message = message
        self.msg_id = msg_id
        self.trace = trace
        self.deliveries = 0
        self.generation = 0
        self.settled = False
        self.timer: asyncio.TimerHandle | None = None

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _MemoryDelivery(Generic[M]):
    """One delivery of an entry. Only the latest delivery may nak, term or extend it; an
    ack from an earlier one still settles the message (as JetStream's would)."""

    __slots__ = ("_entry", "_generation", "_queue")

    def __init__(self, queue: _Queue[M], entry: _Entry[M]) -> None:
        self._queue = queue
        self._entry = entry
        self._generation = entry.generation

    @property
    def message(self) -> M:
        return self._entry.message

    @property
    def deliveries(self) -> int:
        return self._entry.deliveries

    @property
    def traceparent(self) -> str | None:
        return self._entry.trace

    def _current(self) -> bool:
        entry = self._entry
        return not entry.settled and entry.generation == self._generation

    async def ack(self) -> None:
        entry = self._entry
        if not entry.settled:
            entry.settled = True
            entry.stop_timer()

    async def nak(self, delay: float | None = None) -> None:
        if self._current():
            self._queue.retry(self._entry, delay, "it was negatively acknowledged")

    async def in_progress(self) -> None:
        if self._current():
            self._queue.start_timer(self._entry)

    async def term(self, reason: str) -> None:
        if self._current():
            self._queue.dead(self._entry, f"terminated by its consumer: {reason}")


class _Queue(Generic[M]):
    """A work queue: each message goes to one taker, comes back if not settled in time,
    and is handed to `on_dead` after `max_deliver` deliveries (None: never)."""

    def __init__(
        self,
        ack_wait: float,
        max_deliver: int | None,
        on_dead: Callable[[_Entry[M], str], None] | None = None,
    ) -> None:
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.on_dead = on_dead
        self.ready: deque[_Entry[M]] = deque()
        self.waiters: deque[asyncio.Future[Delivery[M] | None]] = deque()
        self.delayed: set[_Entry[M]] = set()

    def put(self, entry: _Entry[M], front: bool = False) -> None:
        if entry.settled:
            return
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._hand(entry))
                return
        if front:
            self.ready.appendleft(entry)
        else:
            self.ready.append(entry)

    def _hand(self, entry: _Entry[M]) -> Delivery[M]:
        # The ack clock starts when the message leaves the queue, so one handed to a taker
        # that then vanishes still comes back.
        entry.deliveries += 1
        entry.generation += 1
        self.start_timer(entry)
        return _MemoryDelivery(self, entry)

    def start_timer(self, entry: _Entry[M]) -> None:
        entry.stop_timer()
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(self.ack_wait, self._expired, entry, entry.generation)

    def _expired(self, entry: _Entry[M], generation: int) -> None:
        if entry.settled or entry.generation != generation:
            return
        entry.timer = None
        self.retry(entry, None, f"it was not acknowledged within {self.ack_wait:g} s")

    def retry(self, entry: _Entry[M], delay: float | None, why: str) -> None:
        entry.stop_timer()
        entry.generation += 1  # the delivery that failed may no longer settle or extend it
        if self.max_deliver is not None and entry.deliveries >= self.max_deliver:
            self.dead(
                entry,
                f"delivered {entry.deliveries} times (the limit) without being acknowledged; "
                f"last time {why}",
            )
            return
        if delay:
            # While it waits, the entry's timer is the requeue, so an ack cancels it.
            entry.timer = asyncio.get_running_loop().call_later(delay, self._requeue, entry)
            self.delayed.add(entry)
        else:
            self.put(entry, front=True)

    def _requeue(self, entry: _Entry[M]) -> None:
        entry.timer = None
        self.delayed.discard(entry)
        self.put(entry, front=True)

    def dead(self, entry: _Entry[M], reason: str) -> None:
        entry.settled = True
        entry.stop_timer()
        if self.on_dead is not None:
            self.on_dead(entry, reason)

    async def get(self, timeout: float | None) -> Delivery[M] | None:
        ready = self.ready
        while ready:
            entry = ready.popleft()
            if not entry.settled:
                return self._hand(entry)
        if timeout is not None and timeout <= 0:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Delivery[M] | None] = loop.create_future()
        self.waiters.append(waiter)
        handle = None
        if timeout is not None:
            handle = loop.call_later(timeout, _resolve_none, waiter)
        try:
            return await waiter
        finally:
            if handle is not None:
                handle.cancel()

    def wake_all(self) -> None:
        while self.waiters:
            _resolve_none(self.waiters.popleft())

    def close(self) -> None:
        self.wake_all()
        for entry in self.ready:
            entry.stop_timer()
        for entry in self.delayed:
            entry.stop_timer()
        self.delayed.clear()


def _resolve_none(waiter: asyncio.Future[Delivery[M] | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _MemorySubscription(Subscription[M]):
    def __init__(self, bus: InProcessBus, queue: _Queue[M]) -> None:
        self._bus = bus
        self._queue = queue
        self._closed = False

    async def next(
        self, timeout: float | None = None, *, room: int | None = None
    ) -> Delivery[M] | None:
        # Nothing is held here: the queue hands a message over when it is taken.
        if self._closed or self._bus.closed:
            return None
        return await self._queue.get(timeout)

    async def close(self) -> None:
        self._closed = True


class InProcessBus:
    """The bus for one process: same interface and delivery semantics as `NatsBus`."""

    def __init__(self, settings: BusSettings | None = None) -> None:
        self._settings = settings or BusSettings()
        window = self._settings.duplicate_window
        self._task_ids = _Dedupe(window)
        self._result_ids = _Dedupe(window)
        self._tasks: dict[str, _Queue[TaskMessage]] = {}
        self._results: _Queue[ResultMessage] = _Queue(self._settings.ack_wait, None)
        self._dead: _Queue[DeadLetter] = _Queue(self._settings.ack_wait, None)
        self._events: dict[str, list[RunEvent]] = {}
        self._event_changed: dict[str, asyncio.Event] = {}
        self.closed = False

    @property
    def settings(self) -> BusSettings:
        return self._settings

    def _check_open(self) -> None:
        if self.closed:
            raise BusError("the in-process bus is closed")

    def _pool(self, pool: str) -> _Queue[TaskMessage]:
        queue = self._tasks.get(pool)
        if queue is None:
            check_token("pool", pool)

            def on_dead(entry: _Entry[TaskMessage], reason: str) -> None:
                letter = DeadLetter(
                    pool, entry.msg_id, reason, entry.deliveries, time.time(), entry.message
                )
                self._dead.put(_Entry(letter, entry.msg_id, entry.trace))

            queue = self._tasks[pool] = _Queue(
                self._settings.ack_wait, self._settings.max_deliver, on_dead
            )
        return queue

    async def publish_task(self, task: TaskMessage) -> bool:
        self._check_open()
        msg_id = task.msg_id
        if self._task_ids.seen(msg_id):
            return False
        self._pool(task.pool).put(_Entry(task, msg_id, task.traceparent))
        return True

    async def tasks(self, pool: str) -> Subscription[TaskMessage]:
        self._check_open()
        return _MemorySubscription(self, self._pool(pool))

    async def publish_result(self, result: ResultMessage) -> bool:
        self._check_open()
        msg_id = result.msg_id
        if self._result_ids.seen(msg_id):
            return False
        self._results.put(_Entry(result, msg_id, result.traceparent))
        return True

    async def results(self) -> Subscription[ResultMessage]:
        self._check_open()
        return _MemorySubscription(self, self._results)

    async def dead_letters(self) -> Subscription[DeadLetter]:
        self._check_open()
        return _MemorySubscription(self, self._dead)

    async def publish_event(self, event: RunEvent) -> bool:
        self._check_open()
        history = self._events.setdefault(event.run_id, [])
        if history and history[-1].seq >= event.seq:
            # Events arrive in seq order from the one writer of a run; an older seq is a
            # republish (after a control-plane restart) and is already here.
            return False
        history.append(event)
        changed = self._event_changed.pop(event.run_id, None)
        if changed is not None:
            changed.set()
        return True

    async def events(
        self, run_id: str, from_seq: int = 1, *, follow: bool = True
    ) -> AsyncIterator[RunEvent]:
        history = self._events.setdefault(run_id, [])
        index = 0
        while True:
            while index < len(history):
                event = history[index]
                index += 1
                if event.seq >= from_seq:
                    yield event
            if not follow or self.closed:
                return
            changed = self._event_changed.get(run_id)
            if changed is None:
                changed = self._event_changed[run_id] = asyncio.Event()
            await changed.wait()

    def forget_run(self, run_id: str) -> None:
        """Drop a finished run's event history (the storage keeps the durable copy)."""
        self._events.pop(run_id, None)
        changed = self._event_changed.pop(run_id, None)
        if changed is not None:
            changed.set()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for queue in self._tasks.values():
            queue.close()
        self._results.close()
        self._dead.close()
        for changed in self._event_changed.values():
            changed.set()
        self._event_changed.clear()
