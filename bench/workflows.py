"""Workflows end to end through the scheduler: embedded, and over NATS + PostgreSQL.

For each mode (the WAT echo component, signed and installed, behind every step):
  chain20    a 20-step chain, run `--rounds` times one after the other
  fan100     one step, 100 parallel steps, a join, run `--rounds` times
  trivial3   a 3-step chain started 200 times one after the other (latency), then 200
             times at once, `--bursts` times (workflows per second: the median burst's)
Figures: median and p95 run latency (ms), workflows per second, and orchestration
overhead per step: (run wall time - the sandbox time its steps reported) / steps.

    python -m bench.workflows [--mode embedded|distributed|both] [--rounds N] [--bursts N]
                              [--nats URL] [--pg URL] [--output table|json]
    python -m bench.workflows --tracing [--rounds N]   # the cost of tracing per step

Distributed: the scheduler on PostgreSQL (a temporary database on 127.0.0.1:5432 unless
--pg is given) and NATS JetStream (a stream prefix of its own, deleted afterwards), and a
`flowforge worker` process (concurrency 4). Skipped when either is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.bus import signed_echo
from flowforge.control.scheduler import PackageFolders, Scheduler, VersionCatalog
from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.storage import Storage
from flowforge.control.workflow import (
    ResolvedConnector,
    StaticResolver,
    WorkflowVersion,
    load_spec_text,
    validate,
)
from flowforge.runtime import telemetry
from flowforge.runtime.bus import BusError, BusSettings
from flowforge.runtime.bus.nats import NatsBus
from flowforge.runtime.package import read_package
from flowforge.runtime.telemetry import RunTracing, execute_span

NATS_URL = "nats://127.0.0.1:4222"
WORKER_CONCURRENCY = 4
BUDGETS = {
    "embedded": {"overhead_ms": 1.0, "trivial3_median_ms": 5.0, "wf_per_s": 300.0},
    "distributed": {"overhead_ms": 5.0},
}


def _step(step_id: str, needs: str | None, value: str) -> str:
    text = f"  {step_id}:\n    uses: bench/echo@^1\n    input: {{v: '{value}'}}\n"
    return text + (f"    needs: [{needs}]\n" if needs else "")


def chain(name: str, length: int) -> str:
    steps = [_step("s0", None, "${{ inputs.n }}")]
    steps += [_step(f"s{i}", None, f"${{{{ steps.s{i - 1}.output.v }}}}") for i in range(1, length)]
    return f"name: {name}\nsteps:\n" + "".join(steps)


def fan(width: int) -> str:
    steps = [_step("start", None, "${{ inputs.n }}")]
    steps += [_step(f"b{i}", None, "${{ steps.start.output.v }}") for i in range(width)]
    needs = ", ".join(f"b{i}" for i in range(width))
    steps.append(_step("join", needs, "${{ steps.b0.output.v }}"))
    return "name: fan100\nsteps:\n" + "".join(steps)


@dataclass
class Figures:
    mode: str
    workflow: str
    steps: int
    runs: int
    median_ms: float
    p95_ms: float
    workflows_per_s: float
    overhead_per_step_ms: float


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


class Runner:
    """Starts a run and waits for it, on whichever scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def one(self, version: WorkflowVersion, n: int) -> tuple[float, float]:
        """(wall ms, sandbox ms) of one run."""
        start = time.perf_counter()
        run_id = await self.scheduler.start_run(version, {"n": n})
        result = await self.scheduler.wait(run_id)
        wall = (time.perf_counter() - start) * 1000
        if result.state.status != "succeeded":
            raise RuntimeError(f"run {run_id} {result.state.status}: {result.state.error}")
        return wall, result.sandbox_ms


async def sequential(runner: Runner, mode: str, version: WorkflowVersion, rounds: int) -> Figures:
    for i in range(min(10, rounds)):  # warm-up: compile cache, statement caches
        await runner.one(version, -i)
    gc.collect()
    walls: list[float] = []
    overheads: list[float] = []
    steps = len(version.steps)
    for i in range(rounds):
        wall, sandbox = await runner.one(version, i)
        walls.append(wall)
        overheads.append((wall - sandbox) / steps)
    median = statistics.median(walls)
    return Figures(
        mode,
        version.name,
        steps,
        rounds,
        round(median, 3),
        round(_p95(walls), 3),
        round(1000 / median, 1),
        round(statistics.median(overheads), 4),
    )


async def concurrent(
    runner: Runner, mode: str, version: WorkflowVersion, count: int, bursts: int
) -> Figures:
    """`count` runs started at once, `bursts` times: workflows per second is the median
    burst's (one burst lasts well under a second, so one alone is a noisy figure);
    latency and overhead are over every run."""
    rates: list[float] = []
    results: list[tuple[float, float]] = []
    for _ in range(bursts):
        gc.collect()
        start = time.perf_counter()
        results += await asyncio.gather(*(runner.one(version, i) for i in range(count)))
        rates.append(count / (time.perf_counter() - start))
    walls = [w for w, _ in results]
    steps = len(version.steps)
    overhead = statistics.median((w - s) / steps for w, s in results)
    return Figures(
        mode,
        f"{version.name} x{count} at once",
        steps,
        len(results),
        round(statistics.median(walls), 3),
        round(_p95(walls), 3),
        round(statistics.median(rates), 1),
        round(overhead, 4),
    )


async def measure(
    runner: Runner, mode: str, resolver: StaticResolver, rounds: int, bursts: int
) -> list[Figures]:
    chain20 = validate(load_spec_text(chain("chain20", 20)), resolver)
    fan100 = validate(load_spec_text(fan(100)), resolver)
    trivial3 = validate(load_spec_text(chain("trivial3", 3)), resolver)
    return [
        await sequential(runner, mode, chain20, rounds),
        await sequential(runner, mode, fan100, max(5, rounds // 4)),
        await sequential(runner, mode, trivial3, 200),
        await concurrent(runner, mode, trivial3, 200, bursts),
    ]


def _resolver(workspace: Path, digest: str) -> StaticResolver:
    manifest = read_package((workspace / "packages" / f"{digest}.ffpkg").read_bytes()).manifest
    return StaticResolver([ResolvedConnector(manifest.name, manifest.version, digest, manifest)])


async def embedded(rounds: int, bursts: int) -> list[Figures]:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        _trust, digest = signed_echo(workspace)
        engine = await EmbeddedEngine.open(workspace, concurrency=4)
        try:
            return await measure(
                Runner(engine.scheduler), "embedded", _resolver(workspace, digest), rounds, bursts
            )
        finally:
            await engine.close()


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _pg(url: str | None) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    name = f"bench_wf_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def distributed(rounds: int, bursts: int, nats_url: str, pg: str | None) -> list[Figures]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = BusSettings(ack_wait=30.0)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        _trust, digest = signed_echo(workspace)
        async with _pg(pg) as url:
            storage = await Storage.open(url)
            bus = await NatsBus.connect(nats_url, prefix=prefix, settings=settings)
            packages = PackageFolders([workspace / "packages"])
            scheduler = Scheduler(storage, bus, VersionCatalog(storage, packages))
            await scheduler.start()  # creates the streams the worker binds to
            worker = WorkerProcess(nats_url, prefix, workspace, Path(tmp) / "config")
            try:
                return await measure(
                    Runner(scheduler),
                    "distributed",
                    _resolver(workspace, digest),
                    rounds,
                    bursts,
                )
            finally:
                await scheduler.stop()
                worker.stop()
                await bus.delete_streams()
                await bus.close()
                await storage.close()


class WorkerProcess:
    """`flowforge worker` in a process of its own, as a deployment runs it (its own
    interpreter and GIL, its own NATS connection). Its log goes to a file: a thread here
    reading it line by line would take this process's GIL twice a step."""

    def __init__(self, nats_url: str, prefix: str, workspace: Path, config: Path) -> None:
        command = [
            sys.executable, "-m", "flowforge.control.cli", "worker", "--nats", nats_url,
            "--prefix", prefix, "--pool", "default", "--concurrency", str(WORKER_CONCURRENCY),
            "--workspace", str(workspace),
        ]  # fmt: skip
        env = {**os.environ, "FLOWFORGE_CONFIG_DIR": str(config)}
        self.log = workspace.parent / "worker.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, stderr=log, stdout=subprocess.DEVNULL, text=True, env=env
            )
        end = time.monotonic() + 60
        while "taking tasks of pool" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("the worker did not start:\n" + self.log.read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        """Drain it (SIGTERM); kill it if it has not finished within 15 s."""
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            print("warning: the worker did not drain within 15 s; killed", file=sys.stderr)
            self.process.kill()
            self.process.wait(10)


def _table(figures: list[Figures]) -> str:
    head = f"{'mode':<12} {'workflow':<24} {'steps':>5} {'runs':>5} {'median ms':>10} " \
        f"{'p95 ms':>9} {'wf/s':>8} {'overhead/step ms':>17}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for f in figures:
        lines.append(
            f"{f.mode:<12} {f.workflow:<24} {f.steps:>5} {f.runs:>5} {f.median_ms:>10.3f} "
            f"{f.p95_ms:>9.3f} {f.workflows_per_s:>8.1f} {f.overhead_per_step_ms:>17.4f}"
        )
    lines.append("")
    lines.append(
        "budgets: overhead/step < 1 ms embedded, < 5 ms distributed; trivial3 median < 5 ms "
        "embedded; 300+ workflows/s"
    )
    return "\n".join(lines)


# --- tracing on/off (--tracing) ----------------------------------------------------------


class _DroppingExporter(SpanExporter):
    """Takes every batch and keeps nothing: the cost of making spans, not of shipping them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _tracing_variants() -> list[tuple[str, TracerProvider | None]]:
    memory = TracerProvider()
    memory.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    batched = TracerProvider()
    batched.add_span_processor(BatchSpanProcessor(_DroppingExporter()))
    return [("off", None), ("in-memory exporter", memory), ("batch, dropping exporter", batched)]


@dataclass
class TracingFigures:
    tracing: str
    runs: int
    median_ms: float
    overhead_per_step_ms: float
    cost_per_step_ms: float  # overhead/step minus that of tracing off
    span_work_per_step_us: float  # the attempt and execute spans alone, no run around them


def span_work_us(steps: int = 5000) -> float:
    """Microseconds per step of the span work alone, with whatever provider is installed:
    open the attempt span, the worker's execute span under it, close both."""
    tracing = RunTracing()
    tracing.start_run("bench", "chain20", {})
    attributes = {"flowforge.workflow": "chain20", "flowforge.connector.name": "bench/echo"}
    start = time.perf_counter()
    for i in range(steps):
        traceparent = tracing.start_attempt("bench", f"s{i % 20}", i + 1, attributes)
        with execute_span(traceparent, "bench/echo", attributes):
            pass
        tracing.end_attempt("bench", f"s{i % 20}", i + 1, "ok", {"flowforge.fuel_used": 1})
    elapsed = time.perf_counter() - start
    tracing.end_run("bench", "succeeded")
    return elapsed / steps * 1e6


async def tracing_cost(rounds: int) -> list[TracingFigures]:
    """chain20 embedded on one engine, the variants interleaved run by run (so a busy
    machine's drift hits them all alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        _trust, digest = signed_echo(workspace)
        engine = await EmbeddedEngine.open(workspace, concurrency=4)
        variants = _tracing_variants()
        walls: dict[str, list[float]] = {name: [] for name, _ in variants}
        overheads: dict[str, list[float]] = {name: [] for name, _ in variants}
        try:
            version = validate(load_spec_text(chain("chain20", 20)), _resolver(workspace, digest))
            runner = Runner(engine.scheduler)
            for i in range(10):  # warm-up: compile cache, statement caches
                await runner.one(version, -i)
            for i in range(rounds):
                for name, provider in variants:
                    telemetry.install(provider)
                    wall, sandbox = await runner.one(version, i)
                    telemetry.install(None)
                    walls[name].append(wall)
                    overheads[name].append((wall - sandbox) / len(version.steps))
        finally:
            await engine.close()
    work: dict[str, float] = {}
    for name, provider in variants:
        telemetry.install(provider)
        work[name] = span_work_us()
        telemetry.install(None)
        if provider is not None:
            provider.shutdown()
    off = statistics.median(overheads["off"])
    return [
        TracingFigures(
            name,
            rounds,
            round(statistics.median(walls[name]), 3),
            round(statistics.median(overheads[name]), 4),
            round(statistics.median(overheads[name]) - off, 4),
            round(work[name], 1),
        )
        for name, _ in variants
    ]


def _tracing_main(rounds: int, output: str) -> int:
    found = asyncio.run(tracing_cost(rounds))
    if output == "json":
        print(json.dumps({"workflow": "chain20 embedded", "rows": [asdict(f) for f in found]}))
        return 0
    print(f"chain20 embedded, {rounds} runs per variant, interleaved")
    print(
        f"{'tracing':<26} {'median ms':>10} {'overhead/step ms':>17} {'cost/step ms':>13} "
        f"{'span work/step us':>18}"
    )
    for f in found:
        print(
            f"{f.tracing:<26} {f.median_ms:>10.3f} {f.overhead_per_step_ms:>17.4f} "
            f"{f.cost_per_step_ms:>13.4f} {f.span_work_per_step_us:>18.1f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "distributed", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=40, help="runs of chain20 (fan100: /4)")
    parser.add_argument(
        "--bursts", type=int, default=3, help="bursts of trivial3 x200 at once (median taken)"
    )
    parser.add_argument("--nats", default=NATS_URL)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (default: a temporary db)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument(
        "--tracing", action="store_true", help="only compare chain20 with tracing off and on"
    )
    args = parser.parse_args(argv)
    if args.tracing:
        return _tracing_main(args.rounds, args.output)
    figures: list[Figures] = []
    skipped: list[str] = []
    if args.mode in ("embedded", "both"):
        figures += asyncio.run(embedded(args.rounds, args.bursts))
    if args.mode in ("distributed", "both"):
        try:
            figures += asyncio.run(distributed(args.rounds, args.bursts, args.nats, args.pg))
        except (BusError, OSError, asyncpg.PostgresError) as exc:
            skipped.append(f"distributed: {exc}")
    if args.output == "json":
        doc: dict[str, Any] = {
            "figures": [asdict(f) for f in figures],
            "budgets": BUDGETS,
            "skipped": skipped,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(_table(figures))
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
