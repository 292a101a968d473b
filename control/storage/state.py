"""The state of a run and of each of its steps, derived from its events.

`RunState.fold(events)` is a pure left fold: the same events always give the same state,
and folding a prefix and then the rest gives what folding everything gives (so the
scheduler keeps a state in memory and applies new events as they are appended, and a
restarted control plane rebuilds it from the log).

What each event's `data` holds (the scheduler writes these; absent fields stay unknown):
  run-started            {"steps": [ids]?, "inputs": ...?}   listed steps start pending
  step-dispatched        {"step", "attempt"}
  step-succeeded         {"step", "attempt"?, "output"}
  step-failed            {"step", "attempt"?, "error"}        the step's final failure
  step-retry-scheduled   {"step", "attempt"?, "error", "retry_at"?: ISO time}
  step-skipped           {"step", "reason"?}
  approval-requested     {"step", "deadline"?: ISO time}
  approval-granted       {"step", "by"?, "comment"?, "output"?}
  approval-rejected      {"step", "by"?, "comment"?}
  run-succeeded          {"outputs"?}
  run-failed / run-cancelled  {"error"?, "reason"?}
The run is waiting-approval while any step waits for an approval, running once started,
and its first succeeded/failed/cancelled event is final.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .records import Event, EventType, RunStatus


class StepStatus(StrEnum):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry-scheduled"
    SKIPPED = "skipped"
    WAITING_APPROVAL = "waiting-approval"

    @property
    def finished(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class StepState:
    id: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    output: Any = None
    error: Any = None
    first_dispatched_at: datetime | None = None
    dispatched_at: datetime | None = None
    finished_at: datetime | None = None
    retry_at: datetime | None = None
    approval_deadline: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        """From the first dispatch to the end (retries included)."""
        if self.first_dispatched_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.first_dispatched_at).total_seconds()


_TERMINAL = {
    EventType.RUN_SUCCEEDED: RunStatus.SUCCEEDED,
    EventType.RUN_FAILED: RunStatus.FAILED,
    EventType.RUN_CANCELLED: RunStatus.CANCELLED,
}


def step_of(event_type: EventType, data: Mapping[str, Any]) -> str | None:
    """The step a step event is about (None for run events, or one without a step)."""
    if event_type in _TERMINAL or event_type is EventType.RUN_STARTED:
        return None
    step = data.get("step")
    return step if isinstance(step, str) else None


def advance_status(status: RunStatus, event_type: EventType, waiting: bool) -> RunStatus:
    """The run's status after one event, given whether any step now waits for an approval.
    The one rule for both the fold and the store's cached status."""
    if status.finished:
        return status
    if event_type in _TERMINAL:
        return _TERMINAL[event_type]
    if status is RunStatus.PENDING and event_type is not EventType.RUN_STARTED:
        return status
    return RunStatus.WAITING_APPROVAL if waiting else RunStatus.RUNNING


def advance_waiting(waiting: set[str], event_type: EventType, data: Mapping[str, Any]) -> None:
    """Track which steps wait for an approval: a request adds its step, any other event
    about that step takes it out."""
    step = step_of(event_type, data)
    if step is None:
        return
    if event_type is EventType.APPROVAL_REQUESTED:
        waiting.add(step)
    else:
        waiting.discard(step)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _attempt(data: Mapping[str, Any], default: int) -> int:
    attempt = data.get("attempt")
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else default


def _next_step(
    step: StepState, kind: EventType, data: Mapping[str, Any], at: datetime
) -> StepState:
    if kind is EventType.STEP_DISPATCHED:
        return replace(
            step,
            status=StepStatus.DISPATCHED,
            attempt=_attempt(data, step.attempt + 1),
            first_dispatched_at=step.first_dispatched_at or at,
            dispatched_at=at,
            retry_at=None,
        )
    if kind is EventType.STEP_SUCCEEDED:
        return replace(
            step,
            status=StepStatus.SUCCEEDED,
            attempt=_attempt(data, step.attempt),
            output=data.get("output"),
            error=None,
            finished_at=at,
        )
    if kind is EventType.STEP_FAILED:
        return replace(
            step,
            status=StepStatus.FAILED,
            attempt=_attempt(data, step.attempt),
            error=data.get("error"),
            finished_at=at,
        )
    if kind is EventType.STEP_RETRY_SCHEDULED:
        return replace(
            step,
            status=StepStatus.RETRY_SCHEDULED,
            attempt=_attempt(data, step.attempt),
            error=data.get("error"),
            retry_at=_time(data.get("retry_at")),
        )
    if kind is EventType.STEP_SKIPPED:
        return replace(step, status=StepStatus.SKIPPED, error=data.get("reason"), finished_at=at)
    if kind is EventType.APPROVAL_REQUESTED:
        return replace(
            step,
            status=StepStatus.WAITING_APPROVAL,
            first_dispatched_at=step.first_dispatched_at or at,
            dispatched_at=at,
            approval_deadline=_time(data.get("deadline")),
        )
    decision = {"by": data.get("by"), "comment": data.get("comment")}
    if kind is EventType.APPROVAL_GRANTED:
        output = data.get("output", {"approved": True, **decision})
        return replace(step, status=StepStatus.SUCCEEDED, output=output, finished_at=at)
    # approval-rejected
    error = {"kind": "rejected", "message": data.get("comment") or "rejected", **decision}
    return replace(step, status=StepStatus.FAILED, error=error, finished_at=at)


@dataclass(slots=True)
class RunState:
    """A run and its steps as its events (up to `last_seq`) leave them."""

    run_id: str | None = None
    status: RunStatus = RunStatus.PENDING
    steps: dict[str, StepState] = field(default_factory=dict)
    waiting_approval: set[str] = field(default_factory=set)
    last_seq: int = 0
    inputs: Any = None
    outputs: Any = None
    error: Any = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def fold(cls, events: Iterable[Event], start: RunState | None = None) -> RunState:
        """The state after `events`, from `start` (left untouched) or from nothing."""
        state = start.copy() if start is not None else cls()
        for event in events:
            state.apply(event)
        return state

    def copy(self) -> RunState:
        # StepState is frozen, so sharing its instances is safe.
        return replace(self, steps=dict(self.steps), waiting_approval=set(self.waiting_approval))

    def apply(self, event: Event) -> None:
        """Apply one event in place (the scheduler's incremental path)."""
        kind, data = event.type, event.data
        self.run_id = self.run_id or event.run_id
        self.last_seq = max(self.last_seq, event.seq)
        step_id = step_of(kind, data)
        if step_id is not None:
            step = self.steps.get(step_id) or StepState(step_id)
            self.steps[step_id] = _next_step(step, kind, data, event.at)
        elif kind is EventType.RUN_STARTED:
            self._started(data, event.at)
        elif kind in _TERMINAL and not self.status.finished:
            self.finished_at = event.at
            self.outputs = data.get("outputs")
            self.error = data.get("error", data.get("reason"))
        advance_waiting(self.waiting_approval, kind, data)
        self.status = advance_status(self.status, kind, bool(self.waiting_approval))

    def _started(self, data: Mapping[str, Any], at: datetime) -> None:
        if self.started_at is not None:
            return
        self.started_at = at
        self.inputs = data.get("inputs")
        steps = data.get("steps")
        if isinstance(steps, list):
            for step_id in steps:
                if isinstance(step_id, str) and step_id not in self.steps:
                    self.steps[step_id] = StepState(step_id)

    def step(self, step_id: str) -> StepState:
        return self.steps.get(step_id) or StepState(step_id)
