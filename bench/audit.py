"""The audit log and step artefacts: what they cost.

  append      one audit append (a transaction that locks the chain head), median and p95
  verify      walking the chain: rows per second over `--entries` rows
  capture     the orchestration overhead per step of the embedded 20-step chain with
              artefact capture on and off (interleaved, run by run), and the difference

    python -m bench.audit [--backend sqlite|postgresql|both] [--entries 2000]
                          [--rounds 30] [--pg URL] [--output table|json]

PostgreSQL means a temporary database on 127.0.0.1:5432 (user postgres) unless --pg is
given; it is skipped with a note when it cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.bus import signed_echo
from bench.workflows import Runner, chain
from flowforge.control.scheduler import scheduler as scheduler_module
from flowforge.control.scheduler.audit_hooks import step_artefacts
from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.storage import Storage
from flowforge.control.storage.artefacts import NewArtefact
from flowforge.control.workflow import ResolvedConnector, StaticResolver, load_spec_text, validate
from flowforge.runtime.package import read_package

PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


@asynccontextmanager
async def _database(backend: str, pg: str | None) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    if pg is not None:
        yield pg
        return
    name = f"ff_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(**PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def audit_figures(backend: str, entries: int, pg: str | None) -> dict[str, Any]:
    async with _database(backend, pg) as url:
        storage = await Storage.open(url)
        try:
            times: list[float] = []
            for i in range(entries):
                start = time.perf_counter()
                await storage.audit.append("bench", "run.start", f"run:r{i}", {"n": i})
                times.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            report = await storage.audit.verify()
            verify_s = time.perf_counter() - start
        finally:
            await storage.close()
    if not report.intact:
        raise RuntimeError(f"the bench's own chain does not verify: {report.problem}")
    return {
        "backend": backend,
        "entries": entries,
        "append_median_ms": round(statistics.median(times), 3),
        "append_p95_ms": round(_p95(times), 3),
        "verify_rows_per_s": round(entries / verify_s),
    }


async def _no_capture(*_args: object) -> list[NewArtefact]:
    return []


async def capture_figures(rounds: int) -> dict[str, Any]:
    """Overhead per step of chain20 with capture on and off, interleaved run by run."""
    # The scheduler calls the name it imported: swap it in the scheduler module's namespace.
    hooks = vars(scheduler_module)
    real: Callable[..., Awaitable[list[NewArtefact]]] = step_artefacts
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        _trust, digest = signed_echo(workspace)
        package = read_package((workspace / "packages" / f"{digest}.ffpkg").read_bytes())
        manifest = package.manifest
        resolver = StaticResolver(
            [ResolvedConnector(manifest.name, manifest.version, digest, manifest)]
        )
        version = validate(load_spec_text(chain("chain20", 20)), resolver)
        engine = await EmbeddedEngine.open(workspace, concurrency=4)
        runner = Runner(engine.scheduler)
        on: list[float] = []
        off: list[float] = []
        try:
            for i in range(5):  # warm-up
                await runner.one(version, -i)
            for i in range(rounds):
                for capture, into in ((real, on), (_no_capture, off)):
                    hooks["step_artefacts"] = capture
                    wall, sandbox = await runner.one(version, i)
                    into.append((wall - sandbox) / len(version.steps))
        finally:
            hooks["step_artefacts"] = real
            await engine.close()
    median_on, median_off = statistics.median(on), statistics.median(off)
    return {
        "workflow": "chain20 embedded",
        "rounds": rounds,
        "overhead_per_step_ms_capture_on": round(median_on, 4),
        "overhead_per_step_ms_capture_off": round(median_off, 4),
        "capture_cost_per_step_ms": round(median_on - median_off, 4),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    audit: list[dict[str, Any]] = []
    notes: list[str] = []
    for backend in backends:
        try:
            audit.append(await audit_figures(backend, args.entries, args.pg))
        except (OSError, asyncpg.PostgresError) as exc:
            notes.append(f"{backend} skipped: {exc}")
    return {"audit": audit, "capture": await capture_figures(args.rounds), "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30, help="chain20 runs per setting")
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (default: a temporary db)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    if args.output == "json":
        print(json.dumps(figures, indent=1))
        return 0
    for row in figures["audit"]:
        print(
            f"audit {row['backend']:<10} append median {row['append_median_ms']} ms, "
            f"p95 {row['append_p95_ms']} ms; verify {row['verify_rows_per_s']} rows/s "
            f"({row['entries']} entries)"
        )
    c = figures["capture"]
    print(
        f"artefacts {c['workflow']}: overhead per step {c['overhead_per_step_ms_capture_on']} ms "
        f"with capture, {c['overhead_per_step_ms_capture_off']} ms without "
        f"(capture costs {c['capture_cost_per_step_ms']} ms per step, {c['rounds']} runs each)"
    )
    for note in figures["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
