"""NATS JetStream restarted mid-run: a NATS server of the test's own (the shared one on
4222 serves other tests) is killed with SIGKILL while runs are under way over it and
PostgreSQL, then started again on the same port and store directory; every run completes
and no step result is applied twice."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flowforge.control.scheduler import PackageFolders, Scheduler, VersionCatalog
from flowforge.control.storage import EventType, RunStatus, Storage
from flowforge.runtime.bus import BusSettings
from flowforge.runtime.bus.nats import NatsBus
from flowforge.runtime.sandbox import Sandbox
from flowforge.runtime.trust import TrustStore
from flowforge.runtime.worker import Worker
from tests.pg import fresh_database

from .conftest import Packages, spin_config, until

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
SETTINGS = BusSettings(ack_wait=2.0, max_deliver=10, duplicate_window=120.0)

# Three spinning steps, so that a run spends most of its life inside a step.
SPIN3 = """
name: spin3
steps:
  a:
    uses: acme/spin@^1
    with: {pad: "%(pad)s"}
    input: {n: "${{ inputs.n }}"}
  b:
    uses: acme/spin@^1
    with: {pad: "%(pad)s"}
    input: {n: "${{ steps.a.output.n }}"}
  c:
    uses: acme/spin@^1
    with: {pad: "%(pad)s"}
    input: {n: "${{ steps.b.output.n }}"}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class NatsServer:
    """A nats-server process with JetStream, restartable on the same port and store."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        port, store = str(self.port), str(self.store)
        command = [NATS_SERVER, "-a", "127.0.0.1", "-p", port, "-js", "-sd", store]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.process.poll() is not None:
                pytest.fail(f"nats-server exited with {self.process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail(f"nats-server did not listen on {self.port} within 20 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if not Path(NATS_SERVER).exists():
        pytest.skip(f"no nats-server at {NATS_SERVER}")
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("ff_dur") as url:
        yield url


@pytest.fixture
async def platform(
    packages: Packages, pg_url: str, nats_server: NatsServer
) -> AsyncIterator[tuple[Scheduler, Worker]]:
    """A scheduler on PostgreSQL and a worker (concurrency 4), each with its own NATS
    connection to the test's server."""
    storage = await Storage.open(pg_url)
    bus = await NatsBus.connect(nats_server.url, prefix="dur", settings=SETTINGS)
    worker_bus = await NatsBus.connect(nats_server.url, prefix="dur", settings=SETTINGS)
    sandbox = Sandbox(max_workers=4)
    folders = PackageFolders([packages.root / "packages"])
    trust = TrustStore(packages.root / "trust.json")
    worker = Worker(worker_bus, sandbox, folders, "default", 4, trust=trust, worker_id="w1")
    worker_task = asyncio.create_task(worker.run())
    scheduler = Scheduler(storage, bus, VersionCatalog(storage, folders))
    await scheduler.start()
    try:
        yield scheduler, worker
    finally:
        await scheduler.stop()
        worker.drain()
        await asyncio.wait_for(worker_task, 30)
        sandbox.close()
        await worker_bus.close()
        await bus.close()
        await storage.close()


async def test_nats_killed_and_restarted_mid_run_loses_and_doubles_nothing(
    packages: Packages, nats_server: NatsServer, platform: tuple[Scheduler, Worker]
) -> None:
    scheduler, worker = platform
    version = packages.workflow(SPIN3 % {"pad": spin_config(0.3)["pad"]})
    run_ids = [await scheduler.start_run(version, {"n": i}) for i in range(12)]
    # Some steps are done, more are dispatched or running: the middle of the runs.
    await until(lambda: worker.completed >= 6, 60, "six steps to finish")

    nats_server.kill()
    # Longer in all than a NATS client's own request timeout (5 s): publishes, pulls and
    # acks made meanwhile fail, and steps finish with nowhere to send their results.
    await asyncio.sleep(1.0)
    # Runs started while the server is away: recorded, their first tasks sent once it is back.
    late = [
        asyncio.create_task(scheduler.start_run(version, {"n": i}, run_id=f"late-{i}"))
        for i in range(12, 16)
    ]
    await asyncio.sleep(7.0)
    nats_server.start()
    run_ids += await asyncio.wait_for(asyncio.gather(*late), 90)

    results = await asyncio.wait_for(asyncio.gather(*(scheduler.wait(r) for r in run_ids)), 90)
    for i, result in enumerate(results):
        assert result.state.status is RunStatus.SUCCEEDED, (result.run_id, result.state.error)
        assert result.state.steps["c"].output == {"n": i}
    for run_id in run_ids:
        events = await scheduler.storage.events.read(run_id)
        applied = Counter(e.data["step"] for e in events if e.type is EventType.STEP_SUCCEEDED)
        assert applied == {"a": 1, "b": 1, "c": 1}, (run_id, applied)
    assert await scheduler.storage.events.unfinished_runs() == []


async def test_streams_and_consumers_come_back_when_the_server_lost_its_store(
    packages: Packages, nats_server: NatsServer, platform: tuple[Scheduler, Worker]
) -> None:
    scheduler, _worker = platform
    version = packages.workflow(SPIN3 % {"pad": spin_config(0.01)["pad"]})
    first = await scheduler.wait(await scheduler.start_run(version, {"n": 1}), timeout=30)
    assert first.state.status is RunStatus.SUCCEEDED, first.state.error

    nats_server.kill()
    shutil.rmtree(nats_server.store)  # a new, empty server on the same address
    nats_server.start()

    # The scheduler's and the worker's pulls find their consumers gone and create them
    # (and the streams) again; runs started afterwards go through.
    run_ids = [await scheduler.start_run(version, {"n": i}) for i in range(2, 5)]
    results = await asyncio.wait_for(asyncio.gather(*(scheduler.wait(r) for r in run_ids)), 60)
    for i, result in enumerate(results, start=2):
        assert result.state.status is RunStatus.SUCCEEDED, result.state.error
        assert result.state.steps["c"].output == {"n": i}
