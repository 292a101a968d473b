"""The scheduler's metrics: step durations by connector and outcome, tasks outstanding
per pool while a step runs, and each circuit breaker's state."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from flowforge.control.storage import StepStatus
from flowforge.runtime.telemetry import metrics
from tests.control.scheduler.conftest import OpenEngine, Packages, spin_config, until
from tests.control.scheduler.test_embedded import SLOW

from .test_step_logs import LOGS


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_durations_outstanding_tasks_and_breakers_are_reported(
    packages: Packages, open_engine: OpenEngine, metric_reader: InMemoryMetricReader
) -> None:
    engine = await open_engine()
    run_id = await engine.start_run(packages.workflow(SLOW % spin_config(0.5)["pad"]), {"n": 1})
    run = engine.scheduler.active(run_id)
    assert run is not None
    await until(lambda: run.status("slow") is StepStatus.DISPATCHED, 10, "the dispatch")
    (outstanding,) = points(metric_reader, metrics.TASKS_OUTSTANDING)
    assert (dict(outstanding.attributes), outstanding.value) == ({"pool": "default"}, 1)
    await engine.scheduler.wait(run_id, timeout=20)
    await engine.run(packages.workflow(LOGS), {})

    durations = {
        (p.attributes["connector"], p.attributes["outcome"]): p
        for p in points(metric_reader, metrics.STEP_DURATION)
    }
    assert set(durations) == {
        ("acme/spin", "ok"),
        ("acme/echo", "ok"),
        ("acme/guest", "ok"),
        ("acme/guest", "failed"),
    }
    assert durations["acme/guest", "failed"].count == 2  # both attempts
    assert all(p.sum > 0 for p in durations.values())
    assert [p.value for p in points(metric_reader, metrics.TASKS_OUTSTANDING)] in ([], [0])
    (breaker,) = points(metric_reader, metrics.BREAKER_STATE)
    assert dict(breaker.attributes) == {"connector": "acme/guest", "host": "-"}
    assert breaker.value == metrics.BREAKER_VALUES["closed"]  # two failures: below threshold
