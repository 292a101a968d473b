"""What the API server drives: the engine in this process (`EmbeddedEngine`), over the
in-process bus by default or over NATS JetStream (usually with PostgreSQL, workers
elsewhere unless `with_worker`).

The servicers use `storage`, `scheduler`, `resolver` (for Submit), `dev` (unsigned
development connectors), `ensure_pools(version)` and `close()`: the `Engine` protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from flowforge.control.scheduler import Scheduler
from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.storage import Storage
from flowforge.control.workflow import Resolver, WorkflowVersion
from flowforge.runtime.bus import BusSettings
from flowforge.runtime.bus.nats import DEFAULT_PREFIX, NatsBus


class Engine(Protocol):
    storage: Storage
    scheduler: Scheduler
    resolver: Resolver
    dev: bool

    def ensure_pools(self, version: WorkflowVersion) -> None: ...

    async def close(self) -> None: ...


async def open_engine(
    workspace: Path,
    *,
    database: str | None,
    nats: str | None,
    nats_prefix: str = DEFAULT_PREFIX,
    bus_settings: BusSettings | None = None,
    with_worker: bool = True,
    dev_connectors: Path | None = None,
) -> Engine:
    """The engine, started: embedded, or over NATS when `nats` is given."""
    if nats is None:
        return await EmbeddedEngine.open(
            workspace, database=database, dev_connectors=dev_connectors, bus_settings=bus_settings
        )
    bus = await NatsBus.connect(
        nats, prefix=nats_prefix, settings=bus_settings, name="flowforge-server"
    )
    try:
        return await EmbeddedEngine.open(
            workspace,
            database=database,
            bus=bus,
            workers=with_worker,
            dev_connectors=dev_connectors,
        )
    except BaseException:
        await bus.close()
        raise


__all__ = ["Engine", "open_engine"]
