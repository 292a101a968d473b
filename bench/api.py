"""Runs through the gRPC API: Start-to-completion latency and throughput.

A server (embedded: SQLite in a temporary workspace, the in-process bus and worker, the
signed WAT echo connector installed) runs in a child process of its own, as a deployed
one would; the clients run here over loopback with a bearer token. The workflow is the
3-step trivial chain of `bench.workflows`, submitted once.

  latency     Start, then Watch until the run finishes, `--runs` times one after the
              other (after a warm-up): median and p95 in ms
  throughput  8 clients (a channel each), each starting and watching runs back to back,
              `--runs` runs in all: runs per second

    python -m bench.api [--runs N] [--clients 8] [--output table|json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.bus import signed_echo
from bench.workflows import _p95, chain
from flowforge.control.api.client import Api, connect
from flowforge.marketplace.lockfile import LockEntry, LockFile
from flowforge.proto.v1 import run_pb2, workflow_pb2
from flowforge.runtime.package import read_package

WORKFLOW = "trivial3"
WARMUP = 10


@dataclass
class Figures:
    phase: str
    clients: int
    runs: int
    median_ms: float
    p95_ms: float
    runs_per_s: float


def _install_echo(workspace: Path) -> None:
    """The signed echo package, recorded in the lock file as `marketplace install` does."""
    _trust, digest = signed_echo(workspace)
    manifest = read_package((workspace / "packages" / f"{digest}.ffpkg").read_bytes()).manifest
    with LockFile(workspace).editing() as entries:
        entries[manifest.name] = LockEntry(
            manifest.name, manifest.version, digest, manifest.component_sha256 or ""
        )


def _serve(workspace: str, pipe: Connection) -> None:
    """The child process: an embedded API server until the parent closes the pipe."""

    async def main() -> None:
        from flowforge.control.api.server import ApiServer, ServerConfig

        server = await ApiServer.open(ServerConfig(workspace=Path(workspace), listen="127.0.0.1:0"))
        pipe.send((server.address, server.local_token))
        try:
            await asyncio.to_thread(pipe.recv_bytes)  # returns (EOFError) when the parent goes
        except EOFError:
            pass
        finally:
            await server.close()

    asyncio.run(main())


async def one_run(api: Api, n: int) -> float:
    """Start a run and watch it to its end; the wall time in ms."""
    start = time.perf_counter()
    run = await api.runs.Start(
        run_pb2.StartRunRequest(project="default", workflow=WORKFLOW, input_json=f'{{"n": {n}}}')
    )
    last = ""
    async for event in api.runs.Watch(run_pb2.WatchRunRequest(project="default", run_id=run.id)):
        last = event.type
    wall = (time.perf_counter() - start) * 1000
    if last != "run-succeeded":
        raise RuntimeError(f"run {run.id} ended with {last or 'no events'}")
    return wall


async def measure(
    address: str, token: str, workspace: Path, runs: int, clients: int
) -> list[Figures]:
    async with connect(address, token, workspace=workspace) as api:
        await api.workflows.Submit(
            workflow_pb2.SubmitWorkflowRequest(
                project="default", yaml=chain(WORKFLOW, 3), source_name="bench"
            )
        )
        for i in range(WARMUP):
            await one_run(api, -i)
        gc.collect()
        walls = [await one_run(api, i) for i in range(runs)]
    median = statistics.median(walls)
    latency = Figures(
        "latency", 1, runs, round(median, 3), round(_p95(walls), 3), round(1000 / median, 1)
    )

    counter = iter(range(runs))
    concurrent_walls: list[float] = []

    async def client() -> None:
        async with connect(address, token, workspace=workspace) as api:
            for n in counter:  # shared: the clients take the next run number until none is left
                concurrent_walls.append(await one_run(api, n))

    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    throughput = Figures(
        "throughput",
        clients,
        runs,
        round(statistics.median(concurrent_walls), 3),
        round(_p95(concurrent_walls), 3),
        round(runs / elapsed, 1),
    )
    return [latency, throughput]


def run_bench(runs: int, clients: int) -> list[Figures]:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        _install_echo(workspace)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        server = context.Process(target=_serve, args=(str(workspace), child), daemon=True)
        server.start()
        child.close()
        try:
            if not parent.poll(120):
                raise RuntimeError("the API server did not start within 120 s")
            address, token = parent.recv()
            return asyncio.run(measure(address, token, workspace, runs, clients))
        finally:
            parent.close()
            server.join(30)
            if server.is_alive():
                server.kill()


def _table(figures: list[Figures]) -> str:
    head = f"{'phase':<11} {'clients':>7} {'runs':>5} {'median ms':>10} {'p95 ms':>9} {'runs/s':>8}"
    lines = [head, "-" * len(head)]
    lines += [
        f"{f.phase:<11} {f.clients:>7} {f.runs:>5} {f.median_ms:>10.3f} {f.p95_ms:>9.3f} "
        f"{f.runs_per_s:>8.1f}"
        for f in figures
    ]
    lines += ["", "Start-to-completion of the 3-step trivial workflow through gRPC (Start + Watch)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    figures = run_bench(args.runs, args.clients)
    if args.output == "json":
        print(json.dumps({"figures": [asdict(f) for f in figures]}, indent=2))
    else:
        print(_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
