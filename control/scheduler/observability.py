"""What the scheduler tells operators about each run: its trace (run and attempt spans,
`flowforge.runtime.telemetry.spans`), the step metrics, and the step log (the connector's
lines from each result, and the scheduler's own: retry scheduled, breaker open, step
failed), stored with the decision's events (`Batch.logs`, in the same append).

The scheduler calls these hooks unconditionally; with tracing and metrics off they cost a
check each, and a step that logs nothing writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flowforge.control.storage import NewLogLine, Storage
from flowforge.control.storage.logs import LogSource
from flowforge.runtime.bus import ResultMessage, TaskRejected
from flowforge.runtime.outcome import ConnectorFailed, SandboxStopped, Success
from flowforge.runtime.outcome import LogSource as ConnectorLogSource
from flowforge.runtime.telemetry import RunTracing, ids_of, metrics
from flowforge.runtime.telemetry import spans as attr

from .breaker import BreakerView
from .runs import ActiveRun, Batch

log = logging.getLogger("flowforge.scheduler")

_SOURCES: dict[ConnectorLogSource, LogSource] = {
    "host": "connector",
    "stdout": "connector",
    "stderr": "connector",
    "sandbox": "worker",  # the sandbox's own notes (e.g. lines dropped at the cap)
}


def outcome_of(result: ResultMessage) -> tuple[str, str | None, str | None]:
    """(outcome, error kind, error message) of a result."""
    outcome = result.outcome
    if isinstance(outcome, Success):
        return "ok", None, None
    if isinstance(outcome, ConnectorFailed):
        return "failed", outcome.failure.kind, outcome.failure.message
    if isinstance(outcome, SandboxStopped):
        return "stopped", outcome.reason, outcome.message
    assert isinstance(outcome, TaskRejected)
    return "rejected", outcome.reason, outcome.message


class RunObserver:
    """The scheduler's traces, metrics and step logs."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.tracing = RunTracing()

    # --- lifecycle -----------------------------------------------------------------------

    def start(
        self,
        owner: object,
        runs: Callable[[], Iterable[ActiveRun]],
        breakers: Callable[[], list[BreakerView]],
    ) -> None:
        def outstanding() -> dict[str, int]:
            pools: dict[str, int] = {}
            for run in runs():
                for step_id in run.inflight:
                    pool = run.version.steps[step_id].pool
                    pools[pool] = pools.get(pool, 0) + 1
            return pools

        def readings() -> list[metrics.BreakerReading]:
            return [metrics.BreakerReading(v.connector, v.host, v.state.value) for v in breakers()]

        metrics.observe(owner, metrics.Sources(outstanding, readings))

    def stop(self, owner: object) -> None:
        metrics.forget(owner)
        self.tracing.forget()

    # --- runs ----------------------------------------------------------------------------

    def run_started(self, run: ActiveRun, started: dict[str, Any]) -> None:
        """Open the run's span; its `traceparent` goes into the run-started event."""
        traceparent = self.tracing.start_run(
            run.id,
            run.version.name,
            {attr.WORKFLOW_VERSION: run.version.version, attr.PROJECT: run.project},
        )
        if traceparent is not None:
            started["traceparent"] = traceparent

    def run_resumed(self, run: ActiveRun, started: Mapping[str, Any]) -> None:
        traceparent = started.get("traceparent")
        self.tracing.resume_run(run.id, traceparent if isinstance(traceparent, str) else None)

    def run_finished(self, run: ActiveRun) -> None:
        error = run.state.error
        message = str(error.get("message")) if isinstance(error, Mapping) else None
        self.tracing.end_run(run.id, run.state.status.value, message)

    # --- attempts ------------------------------------------------------------------------

    def task_traceparent(self, run: ActiveRun, step_id: str, attempt: int) -> str | None:
        """Open the attempt's span (at dispatch); its context travels with the task."""
        planned = run.version.steps[step_id]
        attributes: dict[str, Any] = {
            attr.WORKFLOW: run.version.name,
            attr.WORKFLOW_VERSION: run.version.version,
            attr.POOL: planned.pool,
        }
        if planned.connector is not None:
            attributes[attr.CONNECTOR] = planned.connector.name
            attributes[attr.CONNECTOR_VERSION] = planned.connector.version
            attributes[attr.CONNECTOR_DIGEST] = planned.connector.digest
        return self.tracing.start_attempt(run.id, step_id, attempt, attributes)

    def result_applied(self, run: ActiveRun, batch: Batch, result: ResultMessage) -> None:
        """The attempt's result is being applied: close its span, time it, and keep the
        connector's log lines for the step log."""
        outcome, kind, message = outcome_of(result)
        stats = result.outcome.stats
        attributes: dict[str, Any] = {
            attr.WORKER: result.worker_id,
            attr.FUEL_USED: stats.fuel_used,
            attr.PEAK_MEMORY: stats.peak_memory_bytes,
            attr.WALL_MS: stats.wall_ms,
        }
        if kind is not None:
            attributes[attr.ERROR_KIND] = kind
        step_id, attempt = result.step_id, result.attempt
        self.tracing.end_attempt(run.id, step_id, attempt, outcome, attributes, message)
        planned = run.version.steps.get(step_id)
        connector = planned.connector.name if planned and planned.connector else step_id
        seconds = (
            result.finished_at - result.started_at
            if result.finished_at > result.started_at > 0
            else stats.wall_ms / 1000
        )
        metrics.record_step_duration(seconds, connector, outcome)
        if not result.outcome.logs:
            return
        at = datetime.fromtimestamp(result.finished_at, UTC) if result.finished_at else _now()
        trace_id, span_id = ids_of(result.traceparent)
        batch.logs.extend(
            NewLogLine(
                step_id,
                attempt,
                at,
                line.level,
                line.message,
                _SOURCES[line.source],
                trace_id,
                span_id,
            )
            for line in result.outcome.logs
        )

    def attempt_lost(
        self, run: ActiveRun, step_id: str, attempt: int, outcome: str, message: str
    ) -> None:
        """The attempt ended without a result (dead-lettered, or timed out)."""
        self.tracing.end_attempt(
            run.id, step_id, attempt, outcome, {attr.ERROR_KIND: outcome}, message
        )

    def step_line(
        self, batch: Batch, run: ActiveRun, step_id: str, attempt: int, level: str, message: str
    ) -> None:
        """A line of the scheduler's about one step (retry scheduled, breaker open ...)."""
        trace_id, span_id = ids_of(self.tracing.attempt_traceparent(run.id, step_id))
        batch.logs.append(
            NewLogLine(step_id, attempt, _now(), level, message, "scheduler", trace_id, span_id)
        )


def _now() -> datetime:
    return datetime.now(UTC)


__all__ = ["RunObserver", "outcome_of"]
