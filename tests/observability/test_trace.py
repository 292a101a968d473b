"""The trace of a run: one trace id from the run span through each step attempt to the
worker's execute span, across a real NATS JetStream bus, parent-child links right, the
attributes present; and a resumed scheduler parents later attempts on the stored run
span."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from flowforge.control.scheduler import PackageFolders, Scheduler, VersionCatalog
from flowforge.control.storage import EventType, RunStatus, Storage
from flowforge.runtime.bus import BusSettings
from flowforge.runtime.sandbox import Sandbox
from flowforge.runtime.telemetry import ids_of
from flowforge.runtime.telemetry import spans as attr
from flowforge.runtime.trust import TrustStore
from flowforge.runtime.worker import DirectoryPackageSource, Worker
from tests.control.scheduler.conftest import OpenEngine, Packages, until
from tests.control.scheduler.test_embedded import APPROVAL, CHAIN
from tests.runtime.bus.conftest import open_bus


@asynccontextmanager
async def over_nats(packages: Packages, prefix: str, tmp_path: Path) -> AsyncIterator[Scheduler]:
    """A scheduler and a worker in this process, each with its own NATS connection."""
    storage = await Storage.open(f"sqlite+aiosqlite:///{tmp_path / 'flowforge.db'}")
    # A long ack wait: on a busy machine a redelivered task would add a second execute
    # span to its attempt (right, but not the shape this test pins down).
    settings = BusSettings(ack_wait=30.0, max_deliver=3, duplicate_window=60.0)
    scheduler_bus = await open_bus("nats", prefix, settings)
    worker_bus = await open_bus("nats", prefix, settings)
    folder = packages.root / "packages"
    scheduler = Scheduler(storage, scheduler_bus, VersionCatalog(storage, PackageFolders([folder])))
    sandbox = Sandbox()
    worker = Worker(
        worker_bus,
        sandbox,
        DirectoryPackageSource(folder),
        trust=TrustStore(packages.root / "trust.json"),
        worker_id="nats-worker",
    )
    working = asyncio.create_task(worker.run())
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
        worker.drain()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(working, 10)
        await worker_bus.close()
        await scheduler_bus.close()
        sandbox.close()
        await storage.close()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


async def test_one_trace_spans_the_run_its_steps_and_the_nats_worker(
    packages: Packages, nats_prefix: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    version = packages.workflow(CHAIN)
    async with over_nats(packages, nats_prefix, tmp_path) as scheduler:
        run_id = await scheduler.start_run(version, {"n": 7})
        result = await scheduler.wait(run_id, timeout=30)
        assert result.state.status is RunStatus.SUCCEEDED, result.state.error
        events = await scheduler.storage.events.read(run_id)

    finished = spans.get_finished_spans()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == [
        "execute acme/echo",
        "run chain",
        "step a",
        "step b",
        "step c",
    ]
    (run,) = by_name["run chain"]
    assert {trace_id(s) for s in finished} == {trace_id(run)}
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes[attr.RUN_ID] == run_id
    assert run.attributes[attr.WORKFLOW_VERSION] == version.version
    assert run.attributes[attr.RUN_STATUS] == "succeeded"
    # The run-started event holds the run span's context, for a resumed scheduler.
    stored = events[0].data["traceparent"]
    assert ids_of(stored) == (format_trace_id(trace_id(run)), format_span_id(span_id(run)))

    executes = by_name["execute acme/echo"]
    assert len(executes) == 3
    echo = version.steps["a"].connector
    assert echo is not None
    for step in "abc":
        (attempt,) = by_name[f"step {step}"]
        assert parent_id(attempt) == span_id(run)
        assert attempt.kind is SpanKind.PRODUCER
        a = attempt.attributes
        assert a is not None
        assert a[attr.STEP] == step and a[attr.ATTEMPT] == 1
        assert a[attr.WORKFLOW] == "chain" and a[attr.WORKFLOW_VERSION] == version.version
        assert a[attr.CONNECTOR] == "acme/echo"
        assert a[attr.CONNECTOR_VERSION] == echo.version
        assert a[attr.CONNECTOR_DIGEST] == echo.digest
        assert a[attr.OUTCOME] == "ok"
        assert a[attr.WORKER] == "nats-worker"
        fuel, memory = a[attr.FUEL_USED], a[attr.PEAK_MEMORY]
        assert isinstance(fuel, int) and fuel > 0
        assert isinstance(memory, int) and memory > 0
        (execute,) = [e for e in executes if parent_id(e) == span_id(attempt)]
        e = execute.attributes
        assert e is not None
        assert e[attr.STEP] == step and e[attr.RUN_ID] == run_id
        assert e[attr.OUTCOME] == "ok" and e[attr.CONNECTOR_DIGEST] == echo.digest
        # The worker's span lies within the attempt's.
        assert attempt.start_time is not None and execute.start_time is not None
        assert attempt.end_time is not None and execute.end_time is not None
        assert attempt.start_time <= execute.start_time <= execute.end_time <= attempt.end_time


async def test_a_resumed_run_parents_its_later_spans_on_the_stored_run_span(
    packages: Packages, open_engine: OpenEngine, spans: InMemorySpanExporter
) -> None:
    version = packages.workflow(APPROVAL % "")
    first = await open_engine()
    run_id = await first.start_run(version, {"amount": 9})
    active = first.scheduler.active(run_id)
    assert active is not None
    await until(lambda: bool(active.state.waiting_approval), 10, "the approval request")
    await first.close()  # the run span never ends: its process "died"

    second = await open_engine()
    started = (await second.storage.events.read(run_id))[0]
    assert started.type is EventType.RUN_STARTED
    run_trace, run_span = ids_of(started.data["traceparent"])
    await second.scheduler.approve(run_id, "sign_off", by="ops")
    result = await second.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.SUCCEEDED

    names = [s.name for s in spans.get_finished_spans()]
    assert "run approval" not in names
    (pay,) = [s for s in spans.get_finished_spans() if s.name == "step pay"]
    assert format_trace_id(trace_id(pay)) == run_trace
    assert pay.parent is not None and format_span_id(pay.parent.span_id) == run_span
