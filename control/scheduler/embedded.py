"""The engine in this process: the scheduler, its storage and bus, and (unless the
workers run elsewhere) a worker per pool running steps in the sandbox.

Embedded, the default: SQLite in the workspace (or `$FLOWFORGE_DATABASE`), the in-process
bus and local workers. Distributed (`flowforge server --nats`): the same engine over a
`NatsBus`, usually PostgreSQL, with local workers only when asked for.

Connectors come from the workspace (installed, signed packages, checked against its trust
store) or, on the development path, from local connector folders built and packed unsigned
(`dev_connectors`), which the worker then runs under the development flag and the run
record says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from flowforge.control.secrets import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    SecretBox,
    SecretStore,
    load_master_key,
)
from flowforge.control.storage import Storage, database_url
from flowforge.control.workflow import (
    Resolver,
    WorkflowVersion,
    WorkspaceResolver,
    load_spec,
    validate,
)
from flowforge.control.workspace import config_dir, trust_store_path
from flowforge.marketplace.install import PACKAGES_DIR
from flowforge.runtime import sealing
from flowforge.runtime.bus import Bus, BusSettings, InProcessBus
from flowforge.runtime.files import write_atomically
from flowforge.runtime.sandbox import Sandbox
from flowforge.runtime.trust import TrustStore
from flowforge.runtime.worker import Worker

from .breaker import BreakerBoard, BreakerSettings, BreakerView
from .catalog import DevConnectors, PackageFolders, VersionCatalog
from .runs import RunResult
from .scheduler import Scheduler

POOL_KEYS_DIR: Final = "pools"  # under the config folder, as `flowforge worker` reads them
DEV_PACKAGES_DIR: Final = "dev-packages"
BREAKERS_FILE: Final = "breakers.json"


def pool_keys_dir() -> Path:
    return config_dir() / POOL_KEYS_DIR


def breakers_path(workspace: Path) -> Path:
    return workspace / BREAKERS_FILE


def read_breakers(workspace: Path) -> list[dict[str, Any]]:
    """The breakers as the last embedded scheduler of this workspace left them."""
    try:
        data = json.loads(breakers_path(workspace).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _secret_store(storage: Storage) -> SecretStore | None:
    """The project secrets, when a master key is configured (none is created here)."""
    if not os.environ.get(MASTER_KEY_ENV) and not (config_dir() / MASTER_KEY_FILE).exists():
        return None
    return SecretStore(storage.db, SecretBox(load_master_key()))


class EmbeddedEngine:
    """Everything for running workflows in this process; `open`, use, then `close`.

    `bus` defaults to the in-process bus; given one (NATS), run events are published on it
    for other processes and `workers=False` leaves the steps to `flowforge worker`s."""

    def __init__(
        self,
        workspace: Path,
        storage: Storage,
        *,
        bus: Bus | None = None,
        workers: bool = True,
        dev_connectors: Path | None = None,
        concurrency: int = 4,
        bus_settings: BusSettings | None = None,
        breaker_settings: BreakerSettings | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.storage = storage
        self.dev = dev_connectors is not None
        self.concurrency = concurrency
        self.bus: Bus = bus if bus is not None else InProcessBus(bus_settings)
        self.sandbox = Sandbox(max_workers=concurrency) if workers else None
        self.worker_prefix = "embedded" if bus is None else "server"
        self.trust = TrustStore(trust_store_path(workspace))
        folders = [workspace / PACKAGES_DIR]
        self.resolver: Resolver
        if dev_connectors is not None:
            dev_out = workspace / DEV_PACKAGES_DIR
            folders.append(dev_out)
            self.resolver = DevConnectors(dev_connectors, dev_out, progress)
        else:
            self.resolver = WorkspaceResolver(workspace, self.trust)
        self.packages = PackageFolders(folders)
        self.catalog = VersionCatalog(storage, self.packages)
        self.breakers = BreakerBoard(breaker_settings, on_change=self._save_breakers)
        self.scheduler = Scheduler(
            storage,
            self.bus,
            self.catalog,
            secrets=_secret_store(storage),
            pool_keys=pool_keys_dir(),
            breakers=self.breakers,
            # In one process listeners see the events; the bus need not keep them too.
            publish_events=bus is not None,
        )
        self._workers: dict[str, tuple[Worker, asyncio.Task[None]]] = {}
        self.closed = False

    @classmethod
    async def open(
        cls,
        workspace: Path,
        *,
        database: str | None = None,
        bus: Bus | None = None,
        workers: bool = True,
        dev_connectors: Path | None = None,
        concurrency: int = 4,
        bus_settings: BusSettings | None = None,
        breaker_settings: BreakerSettings | None = None,
        progress: Callable[[str], None] | None = None,
        start: bool = True,
    ) -> EmbeddedEngine:
        """Open the storage, make the engine (over `bus`, else the in-process bus) and,
        with `start`, start it; the storage is closed again if that fails."""
        workspace.mkdir(parents=True, exist_ok=True)
        storage = await Storage.open(database_url(workspace, database))
        try:
            engine = cls(
                workspace,
                storage,
                bus=bus,
                workers=workers,
                dev_connectors=dev_connectors,
                concurrency=concurrency,
                bus_settings=bus_settings,
                breaker_settings=breaker_settings,
                progress=progress,
            )
        except BaseException:
            await storage.close()
            raise
        if start:
            try:
                await engine.start()
            except BaseException:
                await engine.close()
                raise
        return engine

    async def start(self) -> None:
        """Start a worker for the default pool and the scheduler (which resumes runs)."""
        self.ensure_pool("default")
        for record in await self.storage.events.unfinished_runs():
            with contextlib.suppress(Exception):
                version = await self.catalog.get(record.version)
                self.ensure_pools(version)
        await self.scheduler.start()

    def ensure_pool(self, pool: str) -> None:
        if pool in self._workers or self.sandbox is None:
            return  # running, or the pools' workers run elsewhere (`flowforge worker`)
        keypair = sealing.pool_keypair(pool_keys_dir(), pool) if self._needs_keys() else None

        def unseal(sealed: str) -> dict[str, str]:
            if keypair is None:
                raise sealing.SealError("no pool key configured")
            return sealing.open(sealed, keypair.private)

        worker = Worker(
            self.bus,
            self.sandbox,
            self.packages,
            pool,
            self.concurrency,
            trust=self.trust,
            unseal=unseal,
            allow_unsigned_dev=self.dev,
            worker_id=f"{self.worker_prefix}-{pool}",
        )
        self._workers[pool] = (worker, asyncio.create_task(worker.run()))

    def _needs_keys(self) -> bool:
        return self.scheduler.secrets is not None

    def ensure_pools(self, version: WorkflowVersion) -> None:
        for step in version.steps.values():
            if step.kind == "connector":
                self.ensure_pool(step.pool)

    def load(self, path: Path) -> WorkflowVersion:
        """Read and validate a workflow file (WorkflowInvalid lists every problem)."""
        return validate(load_spec(path), self.resolver)

    async def start_run(
        self, version: WorkflowVersion, input: Any, project: str = "default"
    ) -> str:
        self.ensure_pools(version)
        return await self.scheduler.start_run(version, input, project, unsigned_dev=self.dev)

    async def run(
        self, version: WorkflowVersion, input: Any, project: str = "default"
    ) -> RunResult:
        """Start a run and wait for it to finish."""
        return await self.scheduler.wait(await self.start_run(version, input, project))

    def breaker_views(self) -> list[BreakerView]:
        return self.breakers.views()

    def _save_breakers(self, views: list[BreakerView]) -> None:
        data = json.dumps([v.to_json() for v in views], indent=1).encode("utf-8")
        with contextlib.suppress(OSError):
            write_atomically(breakers_path(self.workspace), data)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.scheduler.stop()
        for worker, _task in self._workers.values():
            worker.drain()
        # Workers notice the drain within a poll and publish what they finish before the
        # bus closes.
        for _worker, task in self._workers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        self._workers.clear()
        await self.bus.close()
        if self.sandbox is not None:
            self.sandbox.close()
        await self.storage.close()

    async def __aenter__(self) -> EmbeddedEngine:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


__all__ = [
    "BREAKERS_FILE",
    "DEV_PACKAGES_DIR",
    "POOL_KEYS_DIR",
    "EmbeddedEngine",
    "breakers_path",
    "pool_keys_dir",
    "read_breakers",
]
