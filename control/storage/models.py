"""The control plane's tables (SQLAlchemy 2). The schema itself is made by the Alembic
migrations in `migrations/versions/`, which must be kept in step with these classes.

The stores use these tables through SQLAlchemy Core statements (not ORM sessions): the
event log is the hot path of every step, and Core keeps an append to a few round trips.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back zone-aware in UTC on every backend (SQLite keeps no
    zone; everything is written in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: storage takes zone-aware timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class WorkflowVersionRow(Base):
    """One immutable workflow version, keyed by the sha256 of its canonical bytes."""

    __tablename__ = "workflow_versions"
    __table_args__ = (Index("ix_workflow_versions_name_created", "name", "created_at"),)

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RunRow(Base):
    """A run; `status`, `last_seq` and `waiting_approval` are caches of its event log,
    kept by the same transaction that appends the events, for listing and resume."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_at", "id"),
        Index("ix_runs_created", "created_at", "id"),
        Index("ix_runs_workflow", "workflow"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(ForeignKey("workflow_versions.version"))
    project: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    input: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    # JSON list of the step ids waiting for an approval (the run is waiting-approval
    # while it is not empty).
    waiting_approval: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    """One entry of a run's append-only history; (run_id, seq) is its place in it."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("run_id", "idempotency_key", name="uq_events_run_idempotency_key"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)


class TimerRow(Base):
    """Something the scheduler must do at a time (retry a step, apply an approval's default
    action, time a run out), kept so a restarted control plane still does it."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_due", "due_at"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[str] = mapped_column(Text)


class SecretRow(Base):
    """A project secret, AES-256-GCM encrypted; `key_id` names the master key it needs."""

    __tablename__ = "secrets"

    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):  # declarative classes always map onto one Table
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


# The tables as Core sees them: the stores build their statements on these.
VERSIONS: Final = _table(WorkflowVersionRow)
RUNS: Final = _table(RunRow)
EVENTS: Final = _table(EventRow)
TIMERS: Final = _table(TimerRow)
SECRETS: Final = _table(SecretRow)
