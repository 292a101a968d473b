"""The plain values the storage hands in and out: events, runs, timers, versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    RUN_STARTED = "run-started"
    STEP_DISPATCHED = "step-dispatched"
    STEP_SUCCEEDED = "step-succeeded"
    STEP_FAILED = "step-failed"
    STEP_RETRY_SCHEDULED = "step-retry-scheduled"
    STEP_SKIPPED = "step-skipped"
    APPROVAL_REQUESTED = "approval-requested"
    APPROVAL_GRANTED = "approval-granted"
    APPROVAL_REJECTED = "approval-rejected"
    RUN_SUCCEEDED = "run-succeeded"
    RUN_FAILED = "run-failed"
    RUN_CANCELLED = "run-cancelled"


STEP_EVENTS = frozenset(
    {
        EventType.STEP_DISPATCHED,
        EventType.STEP_SUCCEEDED,
        EventType.STEP_FAILED,
        EventType.STEP_RETRY_SCHEDULED,
        EventType.STEP_SKIPPED,
        EventType.APPROVAL_REQUESTED,
        EventType.APPROVAL_GRANTED,
        EventType.APPROVAL_REJECTED,
    }
)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting-approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
UNFINISHED = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. `key` is its idempotency key (unique within the run, e.g.
    `result/<step>/<attempt>`): appending a key the run already holds is a no-op. `at`
    defaults to the time of the append. Step events name their step in `data["step"]`."""

    type: EventType
    data: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", EventType(self.type))
        if self.type in STEP_EVENTS and not isinstance(self.data.get("step"), str):
            raise ValueError(f"a {self.type} event names its step: data['step'] is missing")
        if self.key is not None and not 0 < len(self.key) <= 255:
            raise ValueError("an idempotency key is 1 to 255 characters")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("an event's time is zone-aware")


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's history: `seq` counts from 1 without gaps."""

    run_id: str
    seq: int
    type: EventType
    data: dict[str, Any]
    at: datetime
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append did: the run's last seq after it, the events it stored (with their
    seq), and the idempotency keys it dropped because the run already held them."""

    last_seq: int
    events: tuple[Event, ...]
    duplicates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as listed: what started it, and its status as its events left it."""

    id: str
    workflow: str
    version: str
    project: str
    input: Any
    status: RunStatus
    last_seq: int
    waiting_approval: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: tuple[RunRecord, ...]
    next_cursor: str | None


class TimerKind(StrEnum):
    RETRY = "retry"
    APPROVAL_DEADLINE = "approval-deadline"
    STEP_DEADLINE = "step-deadline"
    RUN_DEADLINE = "run-deadline"


@dataclass(frozen=True, slots=True)
class Timer:
    """Something to do at `due_at` for a run; `key` is unique within the run (setting a
    timer with a key the run holds moves it)."""

    run_id: str
    key: str
    kind: TimerKind
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TimerKind(self.kind))
        if self.due_at.tzinfo is None:
            raise ValueError("a timer's due time is zone-aware")


@dataclass(frozen=True, slots=True)
class StoredVersion:
    name: str
    version: str
    canonical: bytes
    created_at: datetime
