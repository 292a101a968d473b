"""Domain records to proto messages. JSON-valued fields are compact JSON text; an absent
value is the empty string (not "null"), so clients can tell "none" from JSON null."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from flowforge.control.storage import Event, EventType, RunRecord, RunState, RunStatus
from flowforge.control.storage.logs import LogRecord
from flowforge.control.storage.projects import ProjectVersion
from flowforge.control.workflow.version import _topological
from flowforge.proto.v1 import run_pb2, workflow_pb2

# The API's status words (run.proto); the storage's own words are accepted too on input.
_STATUS_OUT: Final = {RunStatus.WAITING_APPROVAL: "waiting"}
_STATUS_IN: Final = {"waiting": RunStatus.WAITING_APPROVAL, **{s.value: s for s in RunStatus}}


def status_word(status: RunStatus) -> str:
    return _STATUS_OUT.get(status, status.value)


def parse_status(word: str) -> RunStatus:
    found = _STATUS_IN.get(word.strip().lower())
    if found is None:
        raise ValueError(
            f"unknown run status {word!r}: one of running, waiting, succeeded, failed, "
            "cancelled, pending"
        )
    return found


def compact_json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def timestamp(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def plan_order(canonical: bytes) -> list[str]:
    """Step ids of a canonical form, each after the steps it needs."""
    steps: dict[str, Any] = json.loads(canonical)["spec"]["steps"]
    needs = {step_id: tuple(step.get("needs", ())) for step_id, step in steps.items()}
    return _topological(needs, sorted(steps))


def workflow_message(
    held: ProjectVersion, canonical: bytes, history: Sequence[str] = ()
) -> workflow_pb2.Workflow:
    return workflow_pb2.Workflow(
        name=held.name,
        version=held.version,
        project=held.project,
        created_at=timestamp(held.submitted_at),
        steps=plan_order(canonical),
        canonical_json=canonical.decode("utf-8"),
        history=list(history),
    )


def _step(state: RunState, step_id: str) -> run_pb2.Step:
    step = state.steps.get(step_id)
    if step is None:
        return run_pb2.Step(id=step_id, status="pending")
    return run_pb2.Step(
        id=step.id,
        status=step.status.value,
        attempt=step.attempt,
        started_at=timestamp(step.first_dispatched_at),
        finished_at=timestamp(step.finished_at),
        output_json=compact_json(step.output),
        error_json=compact_json(step.error),
    )


def run_message(
    record: RunRecord,
    events: Sequence[Event] | None = None,
    retry_of: str | None = None,
) -> run_pb2.Run:
    """A run; with its `events`, also its steps, outputs and error (List leaves them out)."""
    message = run_pb2.Run(
        id=record.id,
        project=record.project,
        workflow=record.workflow,
        version=record.version,
        status=status_word(record.status),
        created_at=timestamp(record.created_at),
        finished_at=timestamp(record.finished_at),
        input_json=compact_json(record.input),
        last_seq=record.last_seq,
        retry_of=retry_of or "",
    )
    if events is None:
        return message
    state = RunState.fold(events)
    message.status = status_word(state.status)
    message.last_seq = state.last_seq
    message.steps.extend(_step(state, step_id) for step_id in state.steps)
    if state.status is RunStatus.SUCCEEDED:
        message.output_json = compact_json(state.outputs)
    elif state.status.finished:
        message.error_json = compact_json(state.error)
    message.unsigned_dev = any(
        e.type is EventType.RUN_STARTED and bool(e.data.get("unsigned_dev")) for e in events[:1]
    )
    return message


def event_message(event: Event) -> run_pb2.RunEvent:
    step = event.data.get("step")
    return run_pb2.RunEvent(
        run_id=event.run_id,
        seq=event.seq,
        type=event.type.value,
        at=timestamp(event.at),
        step=step if isinstance(step, str) else "",
        data_json=compact_json(event.data),
    )


def log_message(line: LogRecord) -> run_pb2.LogLine:
    return run_pb2.LogLine(
        run_id=line.run_id,
        seq=line.seq,
        step=line.step,
        attempt=line.attempt,
        at=timestamp(line.at),
        level=line.level,
        message=line.message,
        source=line.source,
        trace_id=line.trace_id or "",
        span_id=line.span_id or "",
    )


__all__ = [
    "compact_json",
    "event_message",
    "log_message",
    "parse_status",
    "plan_order",
    "run_message",
    "status_word",
    "timestamp",
    "workflow_message",
]
