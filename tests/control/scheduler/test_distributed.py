"""The scheduler over NATS JetStream and PostgreSQL, with `flowforge worker` processes:
a worker killed with SIGKILL mid-step (the step is redelivered, the run completes), the
scheduler restarted mid-run (the new one resumes it), and 200 concurrent runs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from flowforge.control.scheduler import PackageFolders, Scheduler, VersionCatalog
from flowforge.control.storage import EventType, RunStatus, Storage
from tests.pg import fresh_database
from tests.runtime.bus.conftest import SETTINGS, delete_streams, new_prefix, open_bus
from tests.runtime.bus.test_worker_process import WorkerProcess

from .conftest import Packages, spin_config
from .test_embedded import CHAIN, SLOW


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("ff_sched") as url:
        yield url


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = new_prefix()
    yield name
    await delete_streams(name)


@pytest.fixture
def workers(packages: Packages, prefix: str, config_dir: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def spawn(
    workers: list[WorkerProcess], packages: Packages, prefix: str, config: Path
) -> WorkerProcess:
    worker = WorkerProcess(packages, prefix, config)  # type: ignore[arg-type]
    workers.append(worker)
    return worker


@asynccontextmanager
async def scheduler(packages: Packages, pg_url: str, prefix: str) -> AsyncIterator[Scheduler]:
    storage = await Storage.open(pg_url)
    bus = await open_bus("nats", prefix)
    catalog = VersionCatalog(storage, PackageFolders([packages.root / "packages"]))
    running = Scheduler(storage, bus, catalog)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await bus.close()
        await storage.close()


async def test_a_worker_killed_mid_step_is_replaced_and_the_run_completes(
    packages: Packages, pg_url: str, prefix: str, workers: list[WorkerProcess], config_dir: Path
) -> None:
    version = packages.workflow(SLOW % spin_config(3.0)["pad"])
    async with scheduler(packages, pg_url, prefix) as running:
        first = spawn(workers, packages, prefix, config_dir)
        run_id = await running.start_run(version, {"n": 4})
        first.wait_for(rf"started {run_id}/slow/1 \(delivery 1\)", 20)
        await asyncio.sleep(0.3)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        second = spawn(workers, packages, prefix, config_dir)
        second.wait_for(rf"started {run_id}/slow/1 \(delivery 2\)", SETTINGS.ack_wait * 10)
        result = await running.wait(run_id, timeout=30)
        assert result.state.status is RunStatus.SUCCEEDED, result.state.error
        assert result.state.steps["after"].output == {"got": 4}
        events = await running.storage.events.read(run_id)
        assert [e.type for e in events].count(EventType.STEP_SUCCEEDED) == 2


async def test_a_restarted_scheduler_resumes_over_nats_and_postgres(
    packages: Packages, pg_url: str, prefix: str, workers: list[WorkerProcess], config_dir: Path
) -> None:
    version = packages.workflow(SLOW % spin_config(1.5)["pad"])
    worker = spawn(workers, packages, prefix, config_dir)
    async with scheduler(packages, pg_url, prefix) as first:
        run_id = await first.start_run(version, {"n": 8})
        worker.wait_for(rf"started {run_id}/slow/1", 20)
    # The control plane is gone while the step finishes; its result waits on the stream.
    worker.wait_for(rf"finished {run_id}/slow/1", 20)
    async with scheduler(packages, pg_url, prefix) as second:
        result = await second.wait(run_id, timeout=30)
        assert result.state.status is RunStatus.SUCCEEDED, result.state.error
        assert result.state.steps["after"].output == {"got": 8}


async def test_two_hundred_concurrent_runs_over_nats_and_postgres(
    packages: Packages, pg_url: str, prefix: str, workers: list[WorkerProcess], config_dir: Path
) -> None:
    version = packages.workflow(CHAIN)
    spawn(workers, packages, prefix, config_dir)
    async with scheduler(packages, pg_url, prefix) as running:
        run_ids = await asyncio.gather(*(running.start_run(version, {"n": i}) for i in range(200)))
        results: list[Any] = await asyncio.wait_for(
            asyncio.gather(*(running.wait(r) for r in run_ids)), 120
        )
        for i, result in enumerate(results):
            assert result.state.status is RunStatus.SUCCEEDED, result.state.error
            assert result.state.steps["c"].output == {"prev": i, "who": "c"}
        assert await running.storage.events.unfinished_runs() == []
        for run_id in run_ids[:50]:
            events = await running.storage.events.read(run_id)
            assert [e.type for e in events].count(EventType.STEP_SUCCEEDED) == 3
        # Every run's events reach its subject, all of them and in seq order, as stored
        # (they are published many runs at once).
        published = await asyncio.wait_for(
            asyncio.gather(*(_published(running, r) for r in run_ids)), 60
        )
        for run_id, seen in zip(run_ids, published, strict=True):
            stored = await running.storage.events.read(run_id)
            assert seen == [(e.seq, e.type.value) for e in stored], run_id


async def _published(running: Scheduler, run_id: str) -> list[tuple[int, str]]:
    """The run's events on the bus, once its last one is there."""
    last = (await running.storage.events.run(run_id)).last_seq
    seen: list[tuple[int, str]] = []
    async for event in running.bus.events(run_id):
        seen.append((event.seq, event.type))
        if event.seq >= last:
            return seen
    return seen
