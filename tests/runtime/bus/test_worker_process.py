"""`flowforge worker` processes over NATS JetStream: one killed with SIGKILL mid-step (the
step goes to another worker and completes), and one stopped with SIGTERM (it drains)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.runtime import Limits, Success
from flowforge.runtime.bus import TaskMessage
from flowforge.runtime.bus.nats import NatsBus

from .conftest import NATS_URL, SETTINGS, Workspace, open_bus, spin_config


class WorkerProcess:
    """A `flowforge worker` child process whose log lines are read as they come."""

    def __init__(self, workspace: Workspace, prefix: str, config: Path) -> None:
        command = [
            sys.executable, "-m", "flowforge.control.cli", "worker",
            "--nats", NATS_URL, "--prefix", prefix, "--pool", "default",
            "--ack-wait", str(SETTINGS.ack_wait), "--max-deliver", str(SETTINGS.max_deliver),
            "--workspace", str(workspace.root),
        ]  # fmt: skip
        env = {**os.environ, "FLOWFORGE_CONFIG_DIR": str(config)}
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.wait_for(r"worker (\S+) taking tasks of pool default", 30)
        self.worker_id = ready.group(1)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        pytest.fail(f"no line matching {pattern!r}; the worker said:\n{''.join(self.log)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def spawn(nats_prefix: str) -> Iterator[list[WorkerProcess]]:
    """Worker processes, killed before the prefix's streams are deleted."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start(
    spawn: list[WorkerProcess], workspace: Workspace, prefix: str, tmp: Path
) -> WorkerProcess:
    worker = WorkerProcess(workspace, prefix, tmp / "config")
    spawn.append(worker)
    return worker


def slow_task(digest: str, step: str, seconds: float) -> TaskMessage:
    return TaskMessage(
        "run-p", step, 1, "default", digest, config=spin_config(seconds),
        input=json.dumps({"step": step}), limits=Limits(fuel=10**12, timeout_s=60),
    )  # fmt: skip


async def connect(prefix: str) -> NatsBus:
    bus = await open_bus("nats", prefix)
    assert isinstance(bus, NatsBus)
    return bus


async def test_a_worker_killed_mid_step_loses_nothing(
    spawn: list[WorkerProcess],
    workspace: Workspace,
    spin_digest: str,
    nats_prefix: str,
    tmp_path: Path,
) -> None:
    bus = await connect(nats_prefix)
    try:
        first = start(spawn, workspace, nats_prefix, tmp_path)
        results = await bus.results()
        await bus.publish_task(slow_task(spin_digest, "long", seconds=3))
        first.wait_for(r"started run-p/long/1 \(delivery 1\)", 20)
        time.sleep(0.3)  # well inside the step
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        assert await results.next(timeout=0.2) is None  # it died before publishing

        second = start(spawn, workspace, nats_prefix, tmp_path)
        second.wait_for(r"started run-p/long/1 \(delivery 2\)", SETTINGS.ack_wait * 10)
        delivery = await results.next(timeout=30)
        assert delivery is not None, "the redelivered step never finished"
        result = delivery.message
        await delivery.ack()
        assert isinstance(result.outcome, Success)
        assert json.loads(result.outcome.output) == {"step": "long"}
        assert result.worker_id == second.worker_id != first.worker_id
        assert await results.next(timeout=SETTINGS.ack_wait * 1.5) is None  # exactly one
    finally:
        await bus.close()


async def test_sigterm_drains_the_worker(
    spawn: list[WorkerProcess],
    workspace: Workspace,
    spin_digest: str,
    nats_prefix: str,
    tmp_path: Path,
) -> None:
    bus = await connect(nats_prefix)
    try:
        worker = start(spawn, workspace, nats_prefix, tmp_path)
        results = await bus.results()
        await bus.publish_task(slow_task(spin_digest, "held", seconds=1.5))
        worker.wait_for(r"started run-p/held/1", 20)
        worker.process.send_signal(signal.SIGTERM)
        await bus.publish_task(slow_task(spin_digest, "after", seconds=0))
        assert worker.process.wait(20) == 0
        worker.wait_for(r"drained after 1 tasks", 5)

        delivery = await results.next(timeout=5)
        assert delivery is not None
        assert delivery.message.step_id == "held"
        assert isinstance(delivery.message.outcome, Success)
        await delivery.ack()
        # The task published during the drain waits, untouched, for the next worker.
        tasks = await bus.tasks("default")
        waiting = await tasks.next(timeout=5)
        assert waiting is not None
        assert (waiting.message.step_id, waiting.deliveries) == ("after", 1)
        await waiting.ack()
    finally:
        await bus.close()
