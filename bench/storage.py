"""Throughput of the control plane's event log on SQLite and PostgreSQL.

For each backend, over a fresh database:
  append 1         one event per append, one writer (the scheduler's usual step): median
                   and p95 microseconds per append, appends/s
  append 10        ten events per append, one writer: events/s
  append parallel  one event per append, N writers on N runs at once: events/s
  read             a whole 200-event log: median microseconds, events/s
  fold             RunState.fold of that log (no database): median microseconds

    python -m bench.storage [--backend sqlite|postgresql|both] [--appends N]
                            [--writers N] [--pg URL] [--output table|json]

PostgreSQL: without --pg, a database is created on 127.0.0.1:5432 (user postgres) and
dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from flowforge.control.storage import EventType, NewEvent, RunState, Storage

CANONICAL = b'{"bench":"storage"}'
VERSION = hashlib.sha256(CANONICAL).hexdigest()


@dataclass
class Figures:
    backend: str
    append1_median_us: float
    append1_p95_us: float
    append1_per_s: float
    append10_events_per_s: float
    parallel_events_per_s: float
    read_median_us: float
    read_events_per_s: float
    fold_median_us: float


def _event(n: int) -> NewEvent:
    return NewEvent(
        EventType.STEP_SUCCEEDED,
        {"step": f"s{n}", "attempt": 1, "output": {"n": n, "text": "x" * 40}},
        key=f"result/s{n}/1",
    )


async def _new_run(storage: Storage) -> str:
    run_id = uuid.uuid4().hex
    await storage.events.create_run(
        run_id,
        workflow="bench",
        version=VERSION,
        project="bench",
        input={},
        events=[NewEvent(EventType.RUN_STARTED, {"steps": []})],
    )
    return run_id


async def _measure(storage: Storage, backend: str, appends: int, writers: int) -> Figures:
    events = storage.events
    await storage.versions.put("bench", VERSION, CANONICAL)

    run_id, last, samples = await _new_run(storage), 1, []
    for n in range(appends):
        began = time.perf_counter_ns()
        last = (await events.append(run_id, last, [_event(n)])).last_seq
        samples.append(time.perf_counter_ns() - began)
    samples.sort()
    median = statistics.median(samples) / 1000
    p95 = samples[int(len(samples) * 0.95)] / 1000
    per_s = len(samples) / (sum(samples) / 1e9)

    run_id, last = await _new_run(storage), 1
    start = time.perf_counter()
    for batch in range(appends // 10):
        batch_events = [_event(batch * 10 + i) for i in range(10)]
        last = (await events.append(run_id, last, batch_events)).last_seq
    append10 = (appends // 10) * 10 / (time.perf_counter() - start)

    runs = [await _new_run(storage) for _ in range(writers)]
    per_writer = max(1, appends // writers)

    async def writer(run: str) -> None:
        seq = 1
        for n in range(per_writer):
            seq = (await events.append(run, seq, [_event(n)])).last_seq

    start = time.perf_counter()
    await asyncio.gather(*(writer(run) for run in runs))
    parallel = writers * per_writer / (time.perf_counter() - start)

    run_id, last = await _new_run(storage), 1
    for batch in range(20):
        last = (
            await events.append(run_id, last, [_event(batch * 10 + i) for i in range(10)])
        ).last_seq
    reads = []
    for _ in range(30):
        start_ns = time.perf_counter_ns()
        log = await events.read(run_id)
        reads.append(time.perf_counter_ns() - start_ns)
    read_us = statistics.median(reads) / 1000
    folds = []
    for _ in range(30):
        start_ns = time.perf_counter_ns()
        RunState.fold(log)
        folds.append(time.perf_counter_ns() - start_ns)
    return Figures(
        backend=backend,
        append1_median_us=round(median, 1),
        append1_p95_us=round(p95, 1),
        append1_per_s=round(per_s),
        append10_events_per_s=round(append10),
        parallel_events_per_s=round(parallel),
        read_median_us=round(read_us, 1),
        read_events_per_s=round(len(log) / (read_us / 1e6)),
        fold_median_us=round(statistics.median(folds) / 1000, 1),
    )


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def _database(backend: str, pg: str | None) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'flowforge.db'}"
        return
    if pg is not None:
        yield pg
        return
    name = f"ff_bench_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _bench(backend: str, pg: str | None, appends: int, writers: int) -> Figures:
    async with _database(backend, pg) as url:
        storage = await Storage.open(url)
        try:
            return await _measure(storage, backend, appends, writers)
        finally:
            await storage.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (default: a temporary db)")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = [asyncio.run(_bench(b, args.pg, args.appends, args.writers)) for b in backends]
    if args.output == "json":
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    for r in results:
        print(f"{r.backend}:")
        print(
            f"  append 1 event        median {r.append1_median_us:8.1f} us  "
            f"p95 {r.append1_p95_us:8.1f} us  {r.append1_per_s:7d} appends/s"
        )
        print(f"  append 10 events      {r.append10_events_per_s:7d} events/s")
        print(f"  append, {args.writers} writers   {r.parallel_events_per_s:7d} events/s")
        print(
            f"  read 200 events       median {r.read_median_us:8.1f} us  "
            f"{r.read_events_per_s:7d} events/s"
        )
        print(f"  fold 200 events       median {r.fold_median_us:8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
