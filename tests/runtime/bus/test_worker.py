"""The worker, in process over both buses: it runs signed packages (WAT and Zig) end to
end, opens sealed secrets, reports what it refuses, keeps long steps with heartbeats, and
drains. Killing and stopping worker processes is in test_worker_process.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.runtime import ConnectorFailed, Limits, Sandbox, SandboxStopped, Success, sealing
from flowforge.runtime.bus import Bus, ResultMessage, Subscription, TaskMessage, TaskRejected
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import fingerprint, raw_public_key
from flowforge.runtime.worker import DirectoryPackageSource, Worker

from .conftest import SETTINGS, Workspace, make_manifest, spin_config, until

SECRET = "s3cr3t-Value-42"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(max_workers=4)
    yield box
    box.close()


class Running:
    """Workers running on a bus, drained and awaited when the test ends."""

    def __init__(self, bus: Bus, sandbox: Sandbox, workspace: Workspace) -> None:
        self.bus = bus
        self.sandbox = sandbox
        self.workspace = workspace
        self.workers: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(self, concurrency: int = 2, **options: object) -> Worker:
        worker = Worker(
            self.bus,
            self.sandbox,
            DirectoryPackageSource(self.workspace.packages),
            "default",
            concurrency,
            trust=self.workspace.trust,
            **options,  # type: ignore[arg-type]
        )
        self.workers.append((worker, asyncio.create_task(worker.run())))
        return worker

    async def stop(self) -> None:
        for worker, _ in self.workers:
            worker.drain()
        await asyncio.wait_for(asyncio.gather(*(t for _, t in self.workers)), 30)


@pytest.fixture
async def running(bus: Bus, sandbox: Sandbox, workspace: Workspace) -> AsyncIterator[Running]:
    workers = Running(bus, sandbox, workspace)
    yield workers
    await workers.stop()


async def result_of(results: Subscription[ResultMessage], timeout: float = 20) -> ResultMessage:
    delivery = await results.next(timeout=timeout)
    assert delivery is not None, "no result arrived"
    await delivery.ack()
    return delivery.message


def spin_task(digest: str, step: str = "s1", seconds: float = 0.0, **extra: object) -> TaskMessage:
    return TaskMessage(
        "run-1",
        step,
        1,
        "default",
        digest,
        config=spin_config(seconds),
        input=json.dumps({"step": step}),
        limits=Limits(fuel=10**12),
        **extra,  # type: ignore[arg-type]
    )


async def test_a_wat_package_runs_end_to_end(running: Running, spin_digest: str) -> None:
    worker = running.start()
    results = await running.bus.results()
    await running.bus.publish_task(spin_task(spin_digest, traceparent="00-ab-cd-01"))
    result = await result_of(results)
    assert isinstance(result.outcome, Success)
    assert json.loads(result.outcome.output) == {"step": "s1"}
    assert (result.run_id, result.step_id, result.attempt) == ("run-1", "s1", 1)
    assert result.worker_id == worker.worker_id
    assert result.traceparent == "00-ab-cd-01"
    assert not result.unsigned_dev
    assert result.started_at <= result.finished_at
    assert result.outcome.stats.fuel_used > 0
    await until(lambda: worker.completed == 1, 5, "the worker to count the task")
    # Acked after the result: nothing comes back to anyone.
    assert await results.next(timeout=SETTINGS.ack_wait * 1.5) is None


async def test_a_zig_package_runs_with_sealed_secrets(
    running: Running, workspace: Workspace, zig_guest: Path, tmp_path: Path
) -> None:
    keys = sealing.pool_keypair(tmp_path / "pool-keys", "default")
    running.start(unseal=lambda sealed: sealing.open(sealed, keys.private))
    digest = workspace.add_signed(make_manifest("acme/zig-test", "zig"), zig_guest.read_bytes())
    sealed = sealing.seal({"api-key": SECRET}, keys.public)
    results = await running.bus.results()

    def zig(step: str, request: dict[str, object], **extra: object) -> TaskMessage:
        return TaskMessage(
            "run-z",
            step,
            1,
            "default",
            digest,
            input=json.dumps(request),
            **extra,  # type: ignore[arg-type]
        )

    secret_task = zig("secret", {"action": "secret", "name": "api-key"}, secrets=sealed)
    assert SECRET.encode() not in secret_task.encode()
    await running.bus.publish_task(zig("echo", {"action": "echo", "x": [1, "ü"]}))
    failing = {"action": "fail", "kind": "rate-limited", "message": "no", "retry_after_ms": 250}
    await running.bus.publish_task(zig("fail", failing))
    await running.bus.publish_task(secret_task)
    got = {}
    for _ in range(3):
        result = await result_of(results)
        got[result.step_id] = result.outcome
    assert isinstance(got["echo"], Success)
    assert json.loads(got["echo"].output) == {"action": "echo", "x": [1, "ü"]}
    assert isinstance(got["fail"], ConnectorFailed)
    assert (got["fail"].failure.kind, got["fail"].failure.retry_after_ms) == ("rate-limited", 250)
    assert isinstance(got["secret"], Success)
    assert json.loads(got["secret"].output) == {"value": "***"}


async def test_a_revoked_key_stops_a_package_the_worker_already_loaded(
    running: Running, spin_digest: str, workspace: Workspace
) -> None:
    running.start()
    results = await running.bus.results()
    await running.bus.publish_task(spin_task(spin_digest, step="before"))
    assert isinstance((await result_of(results)).outcome, Success)

    workspace.trust.revoke(fingerprint(raw_public_key(workspace.key)))
    await running.bus.publish_task(spin_task(spin_digest, step="after"))
    refused = (await result_of(results)).outcome
    assert isinstance(refused, TaskRejected)
    assert refused.reason == "package-refused"
    assert "no longer trusted" in refused.message or "revoked" in refused.message


async def test_what_the_worker_refuses_is_a_result_saying_why(
    running: Running, workspace: Workspace, spin_component: bytes, spin_digest: str
) -> None:
    running.start()
    stranger = Ed25519PrivateKey.generate()
    untrusted = workspace.add(
        sign_package(pack(make_manifest("acme/spin", "zig"), spin_component), stranger)
    )
    unsigned = workspace.add(pack(make_manifest("acme/spin", "zig"), spin_component))
    results = await running.bus.results()
    await running.bus.publish_task(spin_task("0" * 64, step="missing"))
    await running.bus.publish_task(spin_task(untrusted, step="untrusted"))
    await running.bus.publish_task(spin_task(unsigned, step="unsigned"))
    await running.bus.publish_task(spin_task(spin_digest, step="sealed", secrets="ffseal1.x"))
    got = {}
    for _ in range(4):
        result = await result_of(results)
        got[result.step_id] = result.outcome
    assert got["missing"] == TaskRejected(
        "package-missing", f"no package {'0' * 64} in {workspace.packages}"
    )
    untrusted_outcome = got["untrusted"]
    assert isinstance(untrusted_outcome, TaskRejected)
    assert untrusted_outcome.reason == "package-refused"
    assert "not trusted for publisher acme" in untrusted_outcome.message
    unsigned_outcome = got["unsigned"]
    assert isinstance(unsigned_outcome, TaskRejected)
    assert "not signed" in unsigned_outcome.message
    sealed_outcome = got["sealed"]
    assert isinstance(sealed_outcome, TaskRejected)
    assert sealed_outcome.reason == "secrets-unreadable"
    assert "has no key to open sealed secrets" in sealed_outcome.message


async def test_unsigned_packages_run_only_with_the_development_flag(
    running: Running, workspace: Workspace, spin_component: bytes
) -> None:
    running.start(allow_unsigned_dev=True)
    unsigned = workspace.add(pack(make_manifest("acme/spin", "zig"), spin_component))
    results = await running.bus.results()
    await running.bus.publish_task(spin_task(unsigned))
    result = await result_of(results)
    assert isinstance(result.outcome, Success)
    assert result.unsigned_dev


async def test_a_deadline_shortens_the_step_timeout(running: Running, spin_digest: str) -> None:
    running.start()
    results = await running.bus.results()
    await running.bus.publish_task(spin_task(spin_digest, "late", deadline=time.time() - 1))
    await running.bus.publish_task(
        spin_task(spin_digest, "slow", seconds=5, deadline=time.time() + 0.3)
    )
    got = {}
    for _ in range(2):
        result = await result_of(results)
        got[result.step_id] = result.outcome
    assert isinstance(got["late"], SandboxStopped)
    assert got["late"].reason == "timeout"
    assert "deadline passed" in got["late"].message
    assert isinstance(got["slow"], SandboxStopped)
    assert got["slow"].reason == "timeout"


async def test_heartbeats_keep_a_long_step_with_one_worker(
    running: Running, spin_digest: str
) -> None:
    first = running.start(concurrency=1)
    second = running.start(concurrency=1)
    results = await running.bus.results()
    seconds = SETTINGS.ack_wait * 3
    await running.bus.publish_task(spin_task(spin_digest, seconds=seconds))
    result = await result_of(results, timeout=seconds * 6)
    assert isinstance(result.outcome, Success)
    # Longer than the ack wait: without heartbeats it would have gone to the other worker.
    assert result.outcome.stats.wall_ms > SETTINGS.ack_wait * 1000 * 1.2
    await asyncio.sleep(SETTINGS.ack_wait * 1.5)
    # Run once, by one worker: a redelivery would have started it on the other one.
    assert first.completed + second.completed == 1
    assert await results.next(timeout=0.2) is None


async def test_drain_finishes_what_it_holds_and_takes_nothing_new(
    running: Running, spin_digest: str
) -> None:
    worker = running.start(concurrency=1)
    results = await running.bus.results()
    await running.bus.publish_task(spin_task(spin_digest, "held", seconds=0.8))
    await until(lambda: bool(worker._running), 10, "the worker to take the task")
    worker.drain()
    await running.bus.publish_task(spin_task(spin_digest, "after"))
    await asyncio.wait_for(running.workers[0][1], 10)
    result = await result_of(results, timeout=1)
    assert result.step_id == "held"
    assert isinstance(result.outcome, Success)
    # The task published after the drain is still queued for the next worker.
    tasks = await running.bus.tasks("default")
    delivery = await tasks.next(timeout=5)
    assert delivery is not None
    assert delivery.message.step_id == "after"
    assert delivery.deliveries == 1
    await delivery.ack()


async def test_a_drained_worker_leaves_nothing_asked_for(
    running: Running, spin_digest: str
) -> None:
    # Idle with four free slots, the worker has asked for up to four tasks; once drained
    # that request is withdrawn, so what comes later waits, first-hand, for the next worker.
    worker = running.start(concurrency=4)
    await asyncio.sleep(0.3)
    worker.drain()
    await asyncio.wait_for(running.workers[0][1], 10)
    for step in ("a", "b", "c"):
        await running.bus.publish_task(spin_task(spin_digest, step))
    tasks = await running.bus.tasks("default")
    got = []
    while (delivery := await tasks.next(timeout=2)) is not None:
        got.append((delivery.message.step_id, delivery.deliveries))
        await delivery.ack()
    assert sorted(got) == [("a", 1), ("b", 1), ("c", 1)]
    assert worker.completed == 0
