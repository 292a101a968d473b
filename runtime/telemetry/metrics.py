"""FlowForge's metrics:

- `flowforge.step.duration` (histogram, s): one attempt on its worker, by connector and
  outcome; recorded by the scheduler when it applies the result.
- `flowforge.tasks.outstanding` (observable gauge): tasks published whose result has not
  been applied yet, by pool (tasks published minus results).
- `flowforge.breaker.state` (observable gauge): each circuit breaker, by connector and
  host: 0 closed, 1 half-open, 2 open.

Gauges are read from their sources only when a reader collects, so they cost nothing on
the hot path. Sources register while they live (`observe`) and leave on `forget`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from .setup import meter, on_meter

STEP_DURATION: Final = "flowforge.step.duration"
TASKS_OUTSTANDING: Final = "flowforge.tasks.outstanding"
BREAKER_STATE: Final = "flowforge.breaker.state"
BREAKER_VALUES: Final = {"closed": 0, "half-open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class BreakerReading:
    connector: str
    host: str
    state: str  # closed | half-open | open


@dataclass(frozen=True, slots=True)
class Sources:
    """What one scheduler reports: tasks outstanding per pool, and its breakers."""

    outstanding: Callable[[], dict[str, int]]
    breakers: Callable[[], Iterable[BreakerReading]]


_sources: dict[int, Sources] = {}
_instruments: dict[int, Histogram] = {}  # id(meter) -> its step duration histogram


def _outstanding(_options: CallbackOptions) -> Iterable[Observation]:
    totals: dict[str, int] = {}
    for source in list(_sources.values()):
        for pool, count in source.outstanding().items():
            totals[pool] = totals.get(pool, 0) + count
    return [Observation(count, {"pool": pool}) for pool, count in sorted(totals.items())]


def _breakers(_options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(BREAKER_VALUES.get(b.state, 0), {"connector": b.connector, "host": b.host})
        for source in list(_sources.values())
        for b in source.breakers()
    ]


def _create(found: Meter) -> None:
    if id(found) in _instruments:
        return
    _instruments[id(found)] = found.create_histogram(
        STEP_DURATION, unit="s", description="How long one step attempt ran on its worker"
    )
    found.create_observable_gauge(
        TASKS_OUTSTANDING,
        callbacks=[_outstanding],
        description="Tasks published whose result has not been applied yet",
    )
    found.create_observable_gauge(
        BREAKER_STATE,
        callbacks=[_breakers],
        description="Circuit breaker state: 0 closed, 1 half-open, 2 open",
    )


on_meter(_create)


def record_step_duration(seconds: float, connector: str, outcome: str) -> None:
    found = meter()
    if found is None:
        return
    histogram = _instruments.get(id(found))
    if histogram is not None:
        histogram.record(seconds, {"connector": connector, "outcome": outcome})


def observe(owner: object, sources: Sources) -> None:
    """Report `sources` in the gauges until `forget(owner)`."""
    _sources[id(owner)] = sources


def forget(owner: object) -> None:
    _sources.pop(id(owner), None)


__all__ = [
    "BREAKER_STATE",
    "BREAKER_VALUES",
    "STEP_DURATION",
    "TASKS_OUTSTANDING",
    "BreakerReading",
    "Sources",
    "forget",
    "observe",
    "record_step_duration",
]
