"""The scheduler: runs workflows step by step over the bus, durably.

    scheduler = Scheduler(storage, bus, VersionCatalog(storage, PackageFolders([...])))
    await scheduler.start()                      # resumes unfinished runs
    run_id = await scheduler.start_run(version, {"user_id": 42})
    result = await scheduler.wait(run_id)        # RunResult: final RunState, sandbox time

`EmbeddedEngine` (in `embedded`) wires one process together: SQLite, the in-process bus,
a worker with the sandbox, and this scheduler.
"""

from .breaker import BreakerBoard, BreakerSettings, BreakerState, BreakerView, target_host
from .catalog import CatalogError, DevConnectors, PackageFolders, VersionCatalog
from .runs import ActiveRun, RunResult
from .scheduler import (
    Listener,
    RunInputInvalid,
    Scheduler,
    SchedulerError,
    approval_events,
    new_run_id,
)

__all__ = [
    "ActiveRun",
    "BreakerBoard",
    "BreakerSettings",
    "BreakerState",
    "BreakerView",
    "CatalogError",
    "DevConnectors",
    "Listener",
    "PackageFolders",
    "RunInputInvalid",
    "RunResult",
    "Scheduler",
    "SchedulerError",
    "VersionCatalog",
    "approval_events",
    "new_run_id",
    "target_host",
]
