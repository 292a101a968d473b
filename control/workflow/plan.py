"""A validated, pinned workflow as the scheduler reads it: plain frozen dataclasses.

`WorkflowVersion` is immutable and identified by `version`, the sha256 of its canonical
form; each `PlannedStep` carries what dispatching it needs (the pinned connector, config,
the raw input mapping, needs explicit and inferred, retry policy, timeout, grants, limits).
`ready_steps` is the scheduler's pure helper for "what may start now".
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from flowforge.runtime.limits import Limits

from .spec import RetryKind, WorkflowSpec

StepKind = Literal["connector", "approval"]

# What an approval step outputs (`steps.<id>.output`), for the steps after it.
APPROVAL_OUTPUT_SCHEMA: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "type": "object",
        "required": ["approved"],
        "additionalProperties": False,
        "properties": {
            "approved": {"type": "boolean"},
            "by": {"type": ["string", "null"]},
            "comment": {"type": ["string", "null"]},
            "timed_out": {"type": "boolean"},
        },
    }
)


@dataclass(frozen=True, slots=True)
class PinnedConnector:
    name: str
    version: str
    digest: str  # sha256 of the package file


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt n (1-based) waits min(max, initial * multiplier**(n-1)) ms, varied by up to
    `jitter` (a fraction) and never less than a failure's retry-after when `honour_retry_after`.
    """

    max_attempts: int = 1
    initial_backoff_ms: int = 500
    max_backoff_ms: int = 60_000
    multiplier: float = 2.0
    jitter: float = 0.2
    retry_on: frozenset[RetryKind] = frozenset()
    honour_retry_after: bool = True

    def should_retry(self, kind: str, attempt: int) -> bool:
        """Whether a failure of `kind` on attempt number `attempt` (1-based) is retried."""
        return attempt < self.max_attempts and kind in self.retry_on

    def backoff_ms(
        self, attempt: int, *, retry_after_ms: int | None = None, random: float = 0.5
    ) -> int:
        """The wait before the attempt after `attempt`; `random` in [0, 1) draws the jitter
        (0.5 means none), passed in so the policy stays a pure function."""
        base = min(self.initial_backoff_ms * self.multiplier ** (attempt - 1), self.max_backoff_ms)
        delay = base * (1 + self.jitter * (2 * random - 1))
        if self.honour_retry_after and retry_after_ms is not None:
            delay = max(delay, retry_after_ms)
        return max(int(delay), 0)


@dataclass(frozen=True, slots=True)
class Grants:
    network: tuple[str, ...] = ()
    secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    message: str | None  # may hold ${{ }} expressions
    on_timeout: Literal["approve", "reject"]


@dataclass(frozen=True, slots=True)
class PlannedStep:
    id: str
    kind: StepKind
    connector: PinnedConnector | None
    config: Mapping[str, Any]
    input_mapping: Any  # the raw mapping, with ${{ }} expressions (evaluate_input)
    needs: tuple[str, ...]  # explicit + inferred from references, sorted
    when: str | None  # the expression, without ${{ }}
    retry: RetryPolicy
    timeout_s: float | None  # per attempt; for an approval, how long to wait
    grants: Grants
    limits: Limits | None  # None for an approval
    pool: str = "default"
    approval: ApprovalPolicy | None = None


@dataclass(frozen=True, slots=True)
class WorkflowVersion:
    name: str
    version: str  # sha256 hex of `canonical`
    spec: WorkflowSpec
    canonical: bytes
    steps: Mapping[str, PlannedStep]  # in a topological order
    inputs_schema: Mapping[str, Any]
    timeout_s: float | None  # the whole run
    concurrency: int | None  # runs of this workflow active at once

    @property
    def short(self) -> str:
        return self.version[:12]

    def dependents(self) -> Mapping[str, tuple[str, ...]]:
        """For each step, the steps that need it."""
        found: dict[str, list[str]] = {step: [] for step in self.steps}
        for step in self.steps.values():
            for need in step.needs:
                found[need].append(step.id)
        return {step: tuple(ids) for step, ids in found.items()}


def ready_steps(
    version: WorkflowVersion, done: Set[str], started: Set[str] = frozenset()
) -> tuple[str, ...]:
    """Steps not yet started whose needs are all done (succeeded or skipped), in plan order.

    The scheduler then evaluates each one's `when` to run or skip it.
    """
    return tuple(
        step.id
        for step in version.steps.values()
        if step.id not in done
        and step.id not in started
        and all(need in done for need in step.needs)
    )


def is_finished(version: WorkflowVersion, done: Set[str]) -> bool:
    return all(step in done for step in version.steps)


__all__ = [
    "APPROVAL_OUTPUT_SCHEMA",
    "ApprovalPolicy",
    "Grants",
    "PinnedConnector",
    "PlannedStep",
    "RetryPolicy",
    "StepKind",
    "WorkflowVersion",
    "is_finished",
    "ready_steps",
]
