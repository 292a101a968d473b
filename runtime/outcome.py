"""The typed outcomes of one invocation: success, the connector's failure, or a sandbox stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from .values import Failure, LogLevel

StopReason = Literal["timeout", "fuel-exhausted", "memory-limit", "trap", "output-too-large"]
STOP_REASONS: Final[tuple[StopReason, ...]] = get_args(StopReason)
LogSource = Literal["host", "stdout", "stderr", "sandbox"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line the connector logged (through `host.log` or its stdout/stderr)."""

    level: LogLevel
    message: str
    source: LogSource = "host"


@dataclass(frozen=True, slots=True)
class Stats:
    """What the invocation cost."""

    wall_ms: float = 0.0
    fuel_used: int = 0
    peak_memory_bytes: int = 0
    http_requests: int = 0


@dataclass(frozen=True, slots=True)
class Success:
    """The connector returned `ok(output)`; `output` is its JSON text."""

    output: str
    logs: list[LogLine] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    ok: Literal[True] = True


@dataclass(frozen=True, slots=True)
class ConnectorFailed:
    """The connector returned `err(failure)`: it ran to completion and reported a failure."""

    failure: Failure
    logs: list[LogLine] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    ok: Literal[False] = False


@dataclass(frozen=True, slots=True)
class SandboxStopped:
    """The sandbox stopped the connector before it returned."""

    reason: StopReason
    message: str
    logs: list[LogLine] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    ok: Literal[False] = False


Outcome = Success | ConnectorFailed | SandboxStopped
