"""The control plane's storage: immutable workflow versions, each run's append-only event
log (with the run's status cached beside it for listing), timers for resume, and the
encrypted secrets' table. SQLite by default, PostgreSQL through asyncpg.

    storage = await Storage.open(database_url(workspace))
    await storage.versions.put(name, version, canonical)
    await storage.events.create_run(run_id, workflow=name, version=version, project="default",
                                    input={...}, events=[NewEvent(EventType.RUN_STARTED, {...})])
    state = RunState.fold(await storage.events.read(run_id))
"""

from __future__ import annotations

from .artefacts import ArtefactStore
from .audit import AuditLog, AuditRecord, VerifyReport
from .database import Database
from .db import CONTROL_SCHEMA, DATABASE_ENV, database_url, default_url, open_engine
from .errors import (
    ConcurrencyConflict,
    DuplicateRun,
    RunFinished,
    StorageError,
    UnknownRun,
    UnknownVersion,
    VersionMismatch,
)
from .events import EventStore
from .logs import LogRecord, LogStore, NewLogLine
from .projects import ProjectStore
from .records import (
    UNFINISHED,
    Appended,
    Event,
    EventType,
    NewEvent,
    RunPage,
    RunRecord,
    RunStatus,
    StoredVersion,
    Timer,
    TimerKind,
)
from .state import RunState, StepState, StepStatus
from .tokens import TokenStore
from .versions import VersionStore


class Storage:
    """The stores over one database; `open` migrates the schema first."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.artefacts = ArtefactStore(db)
        self.events = EventStore(db, self.artefacts.max_bytes)
        self.versions = VersionStore(db)
        self.tokens, self.projects = TokenStore(db), ProjectStore(db)
        self.logs = LogStore(db)
        self.audit = AuditLog(db)

    @classmethod
    async def open(cls, url: str) -> Storage:
        return cls(await Database.open(url))

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


__all__ = [
    "CONTROL_SCHEMA",
    "DATABASE_ENV",
    "UNFINISHED",
    "Appended",
    "ArtefactStore",
    "AuditLog",
    "AuditRecord",
    "ConcurrencyConflict",
    "Database",
    "DuplicateRun",
    "Event",
    "EventStore",
    "EventType",
    "LogRecord",
    "LogStore",
    "NewEvent",
    "NewLogLine",
    "ProjectStore",
    "RunFinished",
    "RunPage",
    "RunRecord",
    "RunState",
    "RunStatus",
    "StepState",
    "StepStatus",
    "Storage",
    "StorageError",
    "StoredVersion",
    "Timer",
    "TimerKind",
    "TokenStore",
    "UnknownRun",
    "UnknownVersion",
    "VerifyReport",
    "VersionMismatch",
    "VersionStore",
    "database_url",
    "default_url",
    "open_engine",
]
