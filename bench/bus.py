"""Cost of the bus, in process and over NATS JetStream.

Prints the median microseconds of:
- bus round trip: publish a task -> the subscriber takes it -> ack;
- worker step: publish a task -> a `Worker` runs it in the sandbox (the WAT echo
  component, signed and verified once) -> publishes the result -> the scheduler's side
  takes and acks the result. This is the per-step transport overhead plus one sandbox call.

    python -m bench.bus [--rounds N] [--nats URL] [--no-nats] [--output json]

The NATS figures use a stream prefix of their own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.runtime import Sandbox
from flowforge.runtime.bus import Bus, BusError, InProcessBus, TaskMessage
from flowforge.runtime.bus.nats import NatsBus
from flowforge.runtime.manifest import parse_manifest
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import raw_public_key
from flowforge.runtime.trust import TrustStore
from flowforge.runtime.worker import DirectoryPackageSource, Worker

ROOT = Path(__file__).resolve().parent.parent
ECHO_WAT = ROOT / "tests" / "fixtures" / "wat" / "echo.wat"


async def median_us_async(fn: Callable[[int], Awaitable[object]], rounds: int) -> float:
    """Median wall time of `await fn(i)` in microseconds, after a warm-up (the async twin
    of bench._timing.median_us: the bus can only be timed from inside its event loop)."""
    for i in range(min(50, rounds)):
        await fn(-1 - i)
    gc.collect()
    samples = []
    for i in range(rounds):
        start = time.perf_counter_ns()
        await fn(i)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def signed_echo(workspace: Path) -> tuple[TrustStore, str]:
    key = Ed25519PrivateKey.generate()
    trust = TrustStore(workspace / "trust.json")
    trust.add(raw_public_key(key), "bench")
    manifest = parse_manifest(
        {
            "name": "bench/echo",
            "version": "1.0.0",
            "description": "Returns its input",
            "language": "zig",
            "license": "Apache-2.0",
            "examples": [{"name": "echo", "input": {"a": 1}, "expect": {"output": {"a": 1}}}],
        }
    )
    component = bytes(wasmtime.wat2wasm(ECHO_WAT.read_text()))
    data = sign_package(pack(manifest, component), key)
    digest = hashlib.sha256(data).hexdigest()
    (workspace / "packages").mkdir(parents=True)
    (workspace / "packages" / f"{digest}.ffpkg").write_bytes(data)
    return trust, digest


async def measure(bus: Bus, rounds: int, workspace: Path, label: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    run = uuid.uuid4().hex[:8]
    tasks = await bus.tasks("bench")

    async def round_trip(i: int) -> None:
        await bus.publish_task(TaskMessage(run, f"rt{i}", 1, "bench", "0" * 64))
        delivery = await tasks.next(timeout=10)
        assert delivery is not None
        await delivery.ack()

    figures[f"{label}: bus round trip (publish, take, ack)"] = await median_us_async(
        round_trip, rounds
    )
    await tasks.close()

    trust, digest = signed_echo(workspace)
    sandbox = Sandbox(max_workers=1)
    worker = Worker(
        bus, sandbox, DirectoryPackageSource(workspace / "packages"), "steps", 1, trust=trust
    )
    running = asyncio.create_task(worker.run())
    results = await bus.results()

    async def step(i: int) -> None:
        task = TaskMessage(run, f"st{i}", 1, "steps", digest, input='{"x":1}')
        await bus.publish_task(task)
        delivery = await results.next(timeout=10)
        assert delivery is not None and delivery.message.outcome.ok, delivery
        await delivery.ack()

    figures[f"{label}: worker step (task -> sandbox -> result)"] = await median_us_async(
        step, max(rounds // 2, 10)
    )
    worker.drain()
    await running
    sandbox.close()
    return figures


async def main_async(rounds: int, nats_url: str | None) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        memory = InProcessBus()
        figures.update(await measure(memory, rounds, Path(tmp) / "memory", "in-process"))
        await memory.close()
        if nats_url is not None:
            try:
                nats = await NatsBus.connect(nats_url, prefix=f"bench{uuid.uuid4().hex[:8]}")
            except BusError as exc:
                print(f"skipping NATS: {exc}", file=sys.stderr)
                return figures
            try:
                figures.update(await measure(nats, rounds, Path(tmp) / "nats", "nats"))
            finally:
                await nats.delete_streams()
                await nats.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--no-nats", action="store_true")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args()
    figures = asyncio.run(main_async(args.rounds, None if args.no_nats else args.nats))
    if args.output == "json":
        print(json.dumps({k: round(v, 1) for k, v in figures.items()}, indent=2))
        return
    width = max(map(len, figures))
    print(f"{'median microseconds':<{width}}  value")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:10.1f}")


if __name__ == "__main__":
    main()
