"""What the scheduler holds in memory for each unfinished run, and one decision's batch.

A run's state is folded once (at start or resume) and then kept current by applying each
event as the scheduler decides it (`RunState.apply`); the log is re-read only after a
conflicting write. Work for a run (results, timers, approvals ...) goes to its inbox and is
handled by one drain at a time, all queued items in one batch: one append per decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowforge.control.storage import (
    Event,
    EventType,
    NewEvent,
    NewLogLine,
    RunState,
    RunStatus,
    StepStatus,
    Timer,
)
from flowforge.control.storage.artefacts import NewArtefact
from flowforge.control.workflow import WorkflowVersion
from flowforge.runtime.bus import DeadLetter, Delivery, ResultMessage

from .breaker import BreakerKey

DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run: its final state, and what its steps spent in the sandbox."""

    run_id: str
    state: RunState
    sandbox_ms: float = 0.0


# --- inbox items ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultItem:
    result: ResultMessage
    delivery: Delivery[ResultMessage] | None = None


@dataclass(frozen=True, slots=True)
class DeadItem:
    letter: DeadLetter
    delivery: Delivery[DeadLetter] | None = None


@dataclass(frozen=True, slots=True)
class TimerItem:
    timer: Timer


@dataclass(frozen=True, slots=True)
class DecisionItem:
    step: str
    approved: bool
    by: str | None
    comment: str | None
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class CancelItem:
    reason: str
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class KickItem:
    """Look again at what may start (after a resume, or a concurrency slot freed)."""


@dataclass(frozen=True, slots=True)
class ExternalItem:
    """Events another process appended (an approval decided from the command line)."""

    events: tuple[Event, ...]


Item = ResultItem | DeadItem | TimerItem | DecisionItem | CancelItem | KickItem | ExternalItem


@dataclass(slots=True)
class Dispatch:
    step: str
    attempt: int
    input: Any


@dataclass(slots=True)
class Batch:
    """One decision: the events, timers, tasks and settlements it produces (the events,
    timers, log lines and artefacts are stored in one transaction)."""

    events: list[NewEvent] = field(default_factory=list)
    set_timers: dict[str, Timer] = field(default_factory=dict)
    clear_timers: set[str] = field(default_factory=set)
    dispatches: list[Dispatch] = field(default_factory=list)
    finished_steps: list[str] = field(default_factory=list)
    acks: list[Delivery[Any]] = field(default_factory=list)
    futures: list[asyncio.Future[None]] = field(default_factory=list)
    external: list[Event] = field(default_factory=list)  # appended by another process
    logs: list[NewLogLine] = field(default_factory=list)  # step log lines
    # The run's status and waiting steps before this decision, as its stored row holds them.
    stored: tuple[RunStatus, tuple[str, ...]] | None = None
    artefacts: list[NewArtefact] = field(default_factory=list)  # step inputs and outputs
    full_scan: bool = False

    def set_timer(self, timer: Timer) -> None:
        self.clear_timers.discard(timer.key)
        self.set_timers[timer.key] = timer

    def clear_timer(self, key: str) -> None:
        self.set_timers.pop(key, None)
        self.clear_timers.add(key)


class ActiveRun:
    """An unfinished run as the scheduler keeps it."""

    def __init__(
        self,
        run_id: str,
        version: WorkflowVersion,
        project: str,
        inputs: Any,
        *,
        unsigned_dev: bool = False,
        state: RunState | None = None,
    ) -> None:
        self.id = run_id
        self.version = version
        self.project = project
        self.unsigned_dev = unsigned_dev
        self.state = state or RunState(run_id=run_id)
        self.context: dict[str, Any] = {"inputs": inputs, "steps": {}}
        self.inbox: list[Item] = []
        self.busy = False
        self.admitted = False
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.inflight: dict[str, BreakerKey] = {}
        self.sandbox_ms = 0.0
        # The secret values sealed for each step, kept so its artefacts are masked without
        # reading and decrypting the secrets again; gone with the run.
        self.secret_masks: dict[str, dict[str, str]] = {}
        self.deadline: float | None = None  # wall-clock Unix seconds, for the task messages
        self.done: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self.started = time.perf_counter()
        self.rebuild_context()

    @property
    def expected_seq(self) -> int:
        return self.state.last_seq

    def rebuild_context(self) -> None:
        """The expression context from the state's outputs (after a fold)."""
        steps: dict[str, Any] = {}
        for step_id, step in self.state.steps.items():
            if step.status is StepStatus.SUCCEEDED:
                steps[step_id] = {"output": step.output}
        self.context["steps"] = steps
        if self.state.inputs is not None:
            self.context["inputs"] = self.state.inputs

    def emit(
        self, batch: Batch, kind: EventType, data: Mapping[str, Any], key: str | None = None
    ) -> None:
        """Decide an event: applied to the state now, appended with the batch."""
        now = datetime.now(UTC)
        payload = dict(data)
        batch.events.append(NewEvent(kind, payload, key, now))
        self.state.apply(Event(self.id, self.state.last_seq + 1, kind, payload, now, key))

    def status(self, step_id: str) -> StepStatus:
        step = self.state.steps.get(step_id)
        return step.status if step is not None else StepStatus.PENDING

    def attempt(self, step_id: str) -> int:
        step = self.state.steps.get(step_id)
        return step.attempt if step is not None else 0


__all__ = [
    "DONE",
    "ActiveRun",
    "Batch",
    "CancelItem",
    "DeadItem",
    "DecisionItem",
    "Dispatch",
    "ExternalItem",
    "Item",
    "KickItem",
    "ResultItem",
    "RunResult",
    "TimerItem",
]
