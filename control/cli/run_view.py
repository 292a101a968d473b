"""Runs, events and log lines from the API as the CLI shows them: one plain document each
(for --output json|yaml) and the text people read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from flowforge.control.storage import Event, EventType
from flowforge.proto.v1 import run_pb2

from .output import Table


def when(message: Message, field: str) -> datetime | None:
    """A Timestamp field as an aware datetime; None when it is not set."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _local(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def json_value(text: str) -> Any:
    """A `*_json` field's value; None when empty (and the text itself if it is not JSON,
    so nothing the server said is lost)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def event_of(message: run_pb2.RunEvent) -> Event | None:
    """The storage event behind a streamed one, so the run's state folds as on the
    server; None for an event type this client does not know."""
    try:
        kind = EventType(message.type)
    except ValueError:
        return None
    data = json_value(message.data_json)
    if not isinstance(data, dict):
        data = {}
    if message.step and "step" not in data:
        data["step"] = message.step
    at = when(message, "at") or datetime.now(UTC)
    return Event(message.run_id, message.seq, kind, data, at)


def event_document(message: run_pb2.RunEvent) -> dict[str, Any]:
    return {
        "run": message.run_id,
        "seq": message.seq,
        "type": message.type,
        "at": _iso(when(message, "at")),
        "step": message.step or None,
        "data": json_value(message.data_json),
    }


def step_document(step: run_pb2.Step) -> dict[str, Any]:
    return {
        "id": step.id,
        "status": step.status,
        "attempt": step.attempt,
        "started_at": _iso(when(step, "started_at")),
        "finished_at": _iso(when(step, "finished_at")),
        "output": json_value(step.output_json),
        "error": json_value(step.error_json),
    }


def run_document(run: run_pb2.Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "project": run.project,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status,
        "created_at": _iso(when(run, "created_at")),
        "finished_at": _iso(when(run, "finished_at")),
        "input": json_value(run.input_json),
        "output": json_value(run.output_json),
        "error": json_value(run.error_json),
        "last_seq": run.last_seq,
        "retry_of": run.retry_of or None,
        "unsigned_dev": run.unsigned_dev,
        "steps": [step_document(s) for s in run.steps],
    }


def _error_text(error_json: str) -> str:
    error = json_value(error_json)
    if isinstance(error, dict):
        return f"{error.get('kind', '')}: {error.get('message', '')}".strip(": ")
    return "" if error is None else str(error)


def run_lines(run: run_pb2.Run) -> list[str]:
    """A run for people: what it is, its status, its steps, then its output or error."""
    dev = "  (unsigned development connectors)" if run.unsigned_dev else ""
    lines = [
        f"run {run.id}  {run.status}{dev}",
        f"  workflow {run.workflow}@{run.version[:12]}  project {run.project}",
        f"  started {_local(when(run, 'created_at'))}"
        + (f"  finished {_local(when(run, 'finished_at'))}" if run.HasField("finished_at") else ""),
    ]
    if run.retry_of:
        lines.append(f"  retry of {run.retry_of}")
    rows = [[s.id, s.status, s.attempt, _error_text(s.error_json)[:60]] for s in run.steps]
    lines += ["", *Table(["STEP", "STATUS", "ATTEMPT", "ERROR"], rows, "(no steps)").lines()]
    output = json_value(run.output_json)
    if output is not None:
        lines += ["", json.dumps(output, indent=2, ensure_ascii=False)]
    if run.error_json:
        lines += ["", f"error: {_error_text(run.error_json)}"]
    return lines


def runs_table(runs: list[run_pb2.Run]) -> Table:
    rows = [
        [r.id, r.workflow, r.version[:12], r.status, _local(when(r, "created_at"))] for r in runs
    ]
    return Table(["RUN", "WORKFLOW", "VERSION", "STATUS", "STARTED"], rows, "(no runs)")


def log_document(line: run_pb2.LogLine) -> dict[str, Any]:
    return {
        "run": line.run_id,
        "seq": line.seq,
        "step": line.step or None,
        "attempt": line.attempt,
        "at": _iso(when(line, "at")),
        "level": line.level,
        "message": line.message,
        "source": line.source,
        "trace_id": line.trace_id or None,
        "span_id": line.span_id or None,
    }


def log_text(line: run_pb2.LogLine) -> str:
    at = when(line, "at")
    clock = at.astimezone().strftime("%H:%M:%S.%f")[:-3] if at is not None else "--:--:--.---"
    where = f"{line.step}#{line.attempt}" if line.step else line.source
    return f"{clock} {line.level.upper():<5} {where}: {line.message}"


__all__ = [
    "event_document",
    "event_of",
    "json_value",
    "log_document",
    "log_text",
    "run_document",
    "run_lines",
    "runs_table",
    "step_document",
    "when",
]
