"""The bus interface the scheduler and the workers share, whatever carries the messages.

Semantics every implementation keeps (the in-process bus and NATS JetStream alike):
- A delivery is settled by exactly one of `ack` (done), `nak(delay)` (deliver again, after
  `delay` seconds), `term(reason)` (give up: a dead letter). A delivery left unsettled for
  `ack_wait` seconds is delivered again; `in_progress()` restarts that clock (heartbeat).
- After `max_deliver` deliveries without an ack the message becomes a `DeadLetter` (read
  through `dead_letters()`) saying why.
- Publishing is idempotent by message id (`run/step/attempt`) within the duplicate window:
  a second publish of the same id is dropped and reported as False.
- Run events are an ordered, replayable stream per run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .messages import DeadLetter, ResultMessage, RunEvent, TaskMessage

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)

DEFAULT_ACK_WAIT_S = 30.0
DEFAULT_MAX_DELIVER = 5
DEFAULT_DUPLICATE_WINDOW_S = 120.0


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Delivery policy: `ack_wait` seconds before an unsettled delivery is redelivered,
    `max_deliver` deliveries before a task is dead-lettered, and the window (seconds) in
    which a repeated message id is dropped."""

    ack_wait: float = DEFAULT_ACK_WAIT_S
    max_deliver: int = DEFAULT_MAX_DELIVER
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW_S

    def __post_init__(self) -> None:
        if not self.ack_wait > 0:
            raise ValueError(f"ack_wait must be positive, got {self.ack_wait}")
        if self.max_deliver < 1:
            raise ValueError(f"max_deliver must be 1 or more, got {self.max_deliver}")
        if not self.duplicate_window > 0:
            raise ValueError(f"duplicate_window must be positive, got {self.duplicate_window}")


class BusError(Exception):
    """The bus could not do what was asked (connection lost, stream refused...)."""


class Delivery(Protocol[M_co]):
    """One delivery of a message; settle it with exactly one of ack / nak / term."""

    @property
    def message(self) -> M_co: ...

    @property
    def deliveries(self) -> int:
        """How many times this message was delivered, this one included (1 the first time)."""
        ...

    @property
    def traceparent(self) -> str | None: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def in_progress(self) -> None: ...

    async def term(self, reason: str) -> None: ...


class Subscription(ABC, Generic[M]):
    """A pull subscription: `next()` takes one delivery when the caller has room for it,
    so a worker never holds more than it can run. One caller at a time."""

    @abstractmethod
    async def next(
        self, timeout: float | None = None, *, room: int | None = None
    ) -> Delivery[M] | None:
        """The next delivery, or None when `timeout` seconds passed with nothing to take.

        `room`: how many deliveries the caller would start at once, this one included (a
        worker's free slots; unset: the subscription's own default). A transport may ask
        its server for that many in one go and hand the others out from the next calls;
        it never asks for more, so nothing it holds waits for a caller that has no room.
        What it holds when closed is negatively acknowledged (delivered again at once)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop taking deliveries; what was taken and not settled is redelivered later."""

    async def __aiter__(self) -> AsyncIterator[Delivery[M]]:
        while True:
            delivery = await self.next(timeout=None)
            if delivery is not None:
                yield delivery


class Bus(Protocol):
    """Tasks to worker pools, results to the scheduler, dead letters, and run events."""

    @property
    def settings(self) -> BusSettings: ...

    async def publish_task(self, task: TaskMessage) -> bool:
        """Queue a task on its pool; False when its id was already published (dropped)."""
        ...

    async def tasks(self, pool: str) -> Subscription[TaskMessage]:
        """Take tasks of `pool`; workers of one pool share its queue (each task goes to one)."""
        ...

    async def publish_result(self, result: ResultMessage) -> bool:
        """Send a result to the scheduler; False when its id was already published."""
        ...

    async def results(self) -> Subscription[ResultMessage]: ...

    async def dead_letters(self) -> Subscription[DeadLetter]: ...

    async def publish_event(self, event: RunEvent) -> bool:
        """Append an event to its run's stream; False when (run, seq) was already there."""
        ...

    def events(
        self, run_id: str, from_seq: int = 1, *, follow: bool = True
    ) -> AsyncIterator[RunEvent]:
        """The run's events with seq >= from_seq in order: the recorded ones, then (with
        `follow`) the new ones as they are published; without `follow` it ends at the last
        one published so far."""
        ...

    async def close(self) -> None: ...
