"""The spans of a run: one trace per run, `run <workflow>` at its root, a `step <id>` span
per attempt (from dispatch until its result is applied), and on the worker an
`execute <connector>` span around the sandbox call, parented by the task's `traceparent`.

The run span's context is stored in the run-started event, so a scheduler that resumes
the run after a restart parents the later attempts on it by id (a non-recording parent:
the original run span died with the process that started it).

Attributes name what ran and what it cost; never a secret value, a step's input or its
output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from ..bus.messages import TaskOutcome
from ..outcome import ConnectorFailed, SandboxStopped, Success
from .propagation import remote_parent, traceparent_of
from .setup import tracer

# Attribute names (flowforge.*: no semantic convention covers workflow steps).
RUN_ID: Final = "flowforge.run_id"
WORKFLOW: Final = "flowforge.workflow"
WORKFLOW_VERSION: Final = "flowforge.workflow.version"
PROJECT: Final = "flowforge.project"
STEP: Final = "flowforge.step"
ATTEMPT: Final = "flowforge.attempt"
CONNECTOR: Final = "flowforge.connector.name"
CONNECTOR_VERSION: Final = "flowforge.connector.version"
CONNECTOR_DIGEST: Final = "flowforge.connector.digest"
POOL: Final = "flowforge.pool"
WORKER: Final = "flowforge.worker"
OUTCOME: Final = "flowforge.outcome"
ERROR_KIND: Final = "flowforge.error.kind"
FUEL_USED: Final = "flowforge.fuel_used"
PEAK_MEMORY: Final = "flowforge.peak_memory_bytes"
WALL_MS: Final = "flowforge.wall_ms"
RUN_STATUS: Final = "flowforge.run.status"

Attributes = Mapping[str, AttributeValue]


@dataclass(slots=True)
class _Run:
    parent: Context | None  # what attempt spans hang from (None: each is a root)
    span: Span | None  # None when the run was started by another (or an earlier) process
    attempts: dict[tuple[str, int], Span] = field(default_factory=dict)
    # The latest attempt's traceparent per step, for lines written about it after its
    # span has ended (a retry scheduled, the step failed).
    latest: dict[str, str] = field(default_factory=dict)


class RunTracing:
    """The spans of the runs one scheduler drives. Every method is a no-op while tracing
    is off (and returns None), so the scheduler calls them unconditionally."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def start_run(self, run_id: str, workflow: str, attributes: Attributes) -> str | None:
        """Open the run's span (a child of the current context: a caller's trace carries
        on) and return its `traceparent`, to be stored with the run."""
        found = tracer()
        if found is None:
            return None
        span = found.start_span(
            f"run {workflow}",
            kind=SpanKind.INTERNAL,
            attributes={RUN_ID: run_id, WORKFLOW: workflow, **attributes},
        )
        self._runs[run_id] = _Run(set_span_in_context(span), span)
        return traceparent_of(span)

    def resume_run(self, run_id: str, traceparent: str | None) -> None:
        """Parent this run's later attempts on the span a stored `traceparent` names."""
        if tracer() is None or run_id in self._runs:
            return
        self._runs[run_id] = _Run(remote_parent(traceparent), None)

    def start_attempt(
        self, run_id: str, step: str, attempt: int, attributes: Attributes
    ) -> str | None:
        """Open (or find, when the task is published again) the attempt's span and
        return its `traceparent` for the task message."""
        found = tracer()
        if found is None:
            return None
        run = self._runs.get(run_id)
        if run is None:  # a run from before tracing was on: its attempts are roots
            run = self._runs[run_id] = _Run(None, None)
        span = run.attempts.get((step, attempt))
        if span is None:
            span = found.start_span(
                f"step {step}",
                context=run.parent,
                kind=SpanKind.PRODUCER,
                attributes={RUN_ID: run_id, STEP: step, ATTEMPT: attempt, **attributes},
            )
            run.attempts[step, attempt] = span
        traceparent = traceparent_of(span)
        if traceparent is not None:
            run.latest[step] = traceparent
        return traceparent

    def attempt_traceparent(self, run_id: str, step: str) -> str | None:
        """The `traceparent` of the step's latest attempt span, ended or not."""
        run = self._runs.get(run_id)
        return run.latest.get(step) if run is not None else None

    def end_attempt(
        self,
        run_id: str,
        step: str,
        attempt: int,
        outcome: str,
        attributes: Attributes,
        error: str | None = None,
    ) -> None:
        """Close the attempt's span with what became of it (`error` marks it failed)."""
        run = self._runs.get(run_id)
        span = run.attempts.pop((step, attempt), None) if run is not None else None
        if span is None:
            return
        span.set_attributes({OUTCOME: outcome, **attributes})
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Close the run's span, and any attempt span still open (abandoned: the run
        finished without its result)."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        for span in run.attempts.values():
            span.set_attribute(OUTCOME, "abandoned")
            span.end()
        if run.span is None:
            return
        run.span.set_attribute(RUN_STATUS, status)
        if error is not None:
            run.span.set_status(Status(StatusCode.ERROR, error))
        run.span.end()

    def forget(self) -> None:
        """Drop every open span without ending it (the scheduler is stopping; whoever
        resumes the runs parents their later spans by the stored ids)."""
        self._runs.clear()


@contextmanager
def execute_span(
    traceparent: str | None, connector: str, attributes: Attributes
) -> Iterator[Span | None]:
    """The worker's span around one sandbox call, a child of the task's attempt span;
    yields None (and costs nothing) while tracing is off."""
    found = tracer()
    if found is None:
        yield None
        return
    with found.start_as_current_span(
        f"execute {connector}",
        context=remote_parent(traceparent),
        kind=SpanKind.CONSUMER,
        attributes={CONNECTOR: connector, **attributes},
        record_exception=True,
    ) as span:
        yield span


def set_outcome(span: Span | None, outcome: TaskOutcome) -> None:
    """What the sandbox call came to and cost, on the worker's span."""
    if span is None:
        return
    stats = outcome.stats
    attributes: dict[str, AttributeValue] = {
        FUEL_USED: stats.fuel_used,
        PEAK_MEMORY: stats.peak_memory_bytes,
        WALL_MS: stats.wall_ms,
    }
    error: str | None = None
    if isinstance(outcome, Success):
        attributes[OUTCOME] = "ok"
    elif isinstance(outcome, ConnectorFailed):
        attributes[OUTCOME] = "failed"
        attributes[ERROR_KIND] = outcome.failure.kind
        error = outcome.failure.message
    else:
        attributes[OUTCOME] = "stopped" if isinstance(outcome, SandboxStopped) else "rejected"
        attributes[ERROR_KIND] = outcome.reason
        error = outcome.message
    span.set_attributes(attributes)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))


__all__ = [
    "ATTEMPT",
    "CONNECTOR",
    "CONNECTOR_DIGEST",
    "CONNECTOR_VERSION",
    "ERROR_KIND",
    "FUEL_USED",
    "OUTCOME",
    "PEAK_MEMORY",
    "POOL",
    "PROJECT",
    "RUN_ID",
    "RUN_STATUS",
    "STEP",
    "WALL_MS",
    "WORKER",
    "WORKFLOW",
    "WORKFLOW_VERSION",
    "Attributes",
    "RunTracing",
    "execute_span",
    "set_outcome",
]
