"""A worker's resident memory over many steps: does it stay flat?

Runs `flowforge worker` (concurrency 4) as a process of its own over NATS JetStream, feeds
it `--steps` tasks of the WAT echo component (signed, verified once), takes and acks every
result, and reads the worker's resident set size (VmRSS) every `--every` steps. Prints the
samples and the growth from the first sample (the warm-up: caches, the compiled component,
the allocator's pools) to the last.

    python -m bench.worker_memory [--steps 100000] [--every 10000] [--nats URL]
                                  [--output table|json]

Budget (DESIGN.md): the resident size stays flat over 100,000 steps. The bench uses a
stream prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.bus import signed_echo
from bench.workflows import NATS_URL, WorkerProcess
from flowforge.runtime.bus import BusError, BusSettings, ResultMessage, Subscription, TaskMessage
from flowforge.runtime.bus.nats import NatsBus

POOL = "default"  # the pool WorkerProcess serves
IN_FLIGHT = 64  # tasks published ahead of the results taken


@dataclass(frozen=True)
class Sample:
    steps: int
    rss_mib: float
    seconds: float


def rss_mib(pid: int) -> float:
    """The process's resident set size (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def run(steps: int, every: int, nats_url: str) -> list[Sample]:
    prefix = f"benchmem{uuid.uuid4().hex[:8]}"
    bus = await NatsBus.connect(nats_url, prefix=prefix, settings=BusSettings(ack_wait=30.0))
    try:
        await bus.ensure_streams()
        results = await bus.results()
        with tempfile.TemporaryDirectory() as tmp:
            workspace = Path(tmp) / "workspace"
            _trust, digest = signed_echo(workspace)
            worker = WorkerProcess(nats_url, prefix, workspace, Path(tmp) / "config")
            try:
                return await _feed(bus, results, worker, digest, steps, every)
            finally:
                worker.stop()
                await results.close()
    finally:
        await bus.delete_streams()
        await bus.close()


async def _feed(
    bus: NatsBus,
    results: Subscription[ResultMessage],
    worker: WorkerProcess,
    digest: str,
    steps: int,
    every: int,
) -> list[Sample]:
    """Publish the tasks (at most IN_FLIGHT ahead), take and ack each result, and read the
    worker's RSS every `every` steps (a progress line each on stderr)."""
    run_id = uuid.uuid4().hex[:12]
    room = asyncio.Semaphore(IN_FLIGHT)

    async def publish() -> None:
        for n in range(steps):
            await room.acquire()
            task = TaskMessage(run_id, f"s{n}", 1, POOL, digest, input=json.dumps({"n": n}))
            await bus.publish_task(task)

    start = time.monotonic()
    samples = [Sample(0, rss_mib(worker.process.pid), 0.0)]
    feeding = asyncio.create_task(publish())
    try:
        for done in range(1, steps + 1):
            delivery = await results.next(30.0)
            if delivery is None:
                raise RuntimeError(f"no result within 30 s after {done - 1} steps")
            if not delivery.message.outcome.ok:
                raise RuntimeError(f"step failed: {delivery.message.outcome}")
            await delivery.ack()
            room.release()
            if done % every == 0 or done == steps:
                sample = Sample(done, rss_mib(worker.process.pid), time.monotonic() - start)
                samples.append(sample)
                print(
                    f"  {done:>8} steps  {sample.rss_mib:7.1f} MiB  {sample.seconds:6.1f} s",
                    file=sys.stderr,
                )
    finally:
        feeding.cancel()
    return samples


def summary(samples: list[Sample]) -> dict[str, float]:
    """Growth from the first sample after the start (the warm-up) to the last."""
    warm, last = samples[1], samples[-1]
    steps = max(1, last.steps - warm.steps)
    return {
        "start_mib": round(samples[0].rss_mib, 1),
        "warm_mib": round(warm.rss_mib, 1),
        "end_mib": round(last.rss_mib, 1),
        "growth_after_warmup_mib": round(last.rss_mib - warm.rss_mib, 1),
        "growth_per_100k_steps_kib": round((last.rss_mib - warm.rss_mib) * 1024 * 100_000 / steps),
        "steps_per_s": round(last.steps / last.seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000, help="steps between samples")
    parser.add_argument("--nats", default=NATS_URL)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    if args.steps < args.every:
        parser.error("--steps must be at least --every (one sample after the warm-up)")
    try:
        samples = asyncio.run(run(args.steps, args.every, args.nats))
    except BusError as exc:
        print(f"NATS not reachable at {args.nats}: {exc}", file=sys.stderr)
        return 1
    found = summary(samples)
    if args.output == "json":
        print(json.dumps({"samples": [asdict(s) for s in samples], "summary": found}, indent=2))
        return 0
    print(f"{'steps':>8}  {'RSS MiB':>8}  {'seconds':>8}")
    for s in samples:
        print(f"{s.steps:>8}  {s.rss_mib:>8.1f}  {s.seconds:>8.1f}")
    print(
        f"worker RSS: {found['start_mib']} MiB at start, {found['warm_mib']} after the "
        f"first {samples[1].steps} steps, {found['end_mib']} at the end: "
        f"{found['growth_after_warmup_mib']:+} MiB after the warm-up "
        f"({found['growth_per_100k_steps_kib']:+} KiB per 100,000 steps); "
        f"{found['steps_per_s']} steps/s"
    )
    print("budget: the resident size stays flat over 100,000 steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
