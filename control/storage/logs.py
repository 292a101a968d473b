"""Step logs: the lines a run's steps produced (the connector's own, already scrubbed of
secret values by the sandbox) and what the worker and scheduler said about them (retry
scheduled, breaker opened, dead letter), with the trace ids that tie each line to its span.

Lines are numbered per run (1, 2, ...), so a reader that follows a run passes back the last
`seq` it saw. The scheduler writes a decision's lines in the transaction that appends its
events (see events.py), not a transaction of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Table, Text, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .database import Database
from .driver_sql import DriverSQL, Insert
from .errors import UnknownRun
from .models import Base, UTCDateTime

LogSource = Literal["connector", "worker", "scheduler"]
LOG_SOURCES: Final[tuple[LogSource, ...]] = get_args(LogSource)
# The connector world's levels; scheduler and worker lines use the same five.
LOG_LEVELS: Final = ("trace", "debug", "info", "warn", "error")
# Two writers numbering the same run at once collide on the primary key; the loser
# renumbers after the winner. More tries than writers a run ever has.
_APPEND_TRIES: Final = 5


class StepLogRow(Base):
    """One log line of a run; (run_id, seq) is its place in the run's log."""

    __tablename__ = "step_logs"
    __table_args__ = (Index("ix_step_logs_run_step_seq", "run_id", "step", "seq"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    step: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    span_id: Mapped[str | None] = mapped_column(String(16), nullable=True)


_table = StepLogRow.__table__
if not isinstance(_table, Table):  # declarative classes always map onto one Table
    raise TypeError("StepLogRow is not mapped to a table")
STEP_LOGS: Final[Table] = _table


@dataclass(frozen=True, slots=True)
class NewLogLine:
    """A line to append. `trace_id` and `span_id` are lowercase hex (32 and 16 digits) of
    the step attempt's span, or None when tracing was off."""

    step: str
    attempt: int
    at: datetime
    level: str
    message: str
    source: LogSource
    trace_id: str | None = None
    span_id: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LOG_LEVELS:
            raise ValueError(f"log level {self.level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.source not in LOG_SOURCES:
            raise ValueError(f"log source {self.source!r} is not one of {', '.join(LOG_SOURCES)}")
        if self.at.tzinfo is None:
            raise ValueError("naive datetime: log lines take zone-aware timestamps")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A stored line: `seq` numbers it within its run, from 1."""

    run_id: str
    seq: int
    step: str
    attempt: int
    at: datetime
    level: str
    message: str
    source: LogSource
    trace_id: str | None
    span_id: str | None


def _source(value: str) -> LogSource:
    for source in LOG_SOURCES:
        if source == value:
            return source
    raise ValueError(f"stored log line has an unknown source {value!r}")


_LAST_LINE: Final = (
    "SELECT runs.id, (SELECT COALESCE(MAX(seq), 0) FROM step_logs WHERE run_id = ?) "
    "FROM runs WHERE runs.id = ?"
)
_INSERT_LINES: Final = (
    "INSERT INTO step_logs (run_id, seq, step, attempt, at, level, message, source, "
    "trace_id, span_id)"
)


def write_log_lines(sql: DriverSQL, run_id: str, lines: Sequence[NewLogLine]) -> None:
    """Append `lines` to the run's log, numbered after its last line, in the caller's
    transaction (`LogStore.append`, or a decision's append in events.py)."""
    found = sql.rows(_LAST_LINE, [run_id, run_id])
    if not found:
        raise UnknownRun(run_id)
    first = int(found[0][1]) + 1
    rows = [
        (
            run_id,
            seq,
            line.step,
            line.attempt,
            sql.timestamp(line.at),
            line.level,
            line.message,
            line.source,
            line.trace_id,
            line.span_id,
        )
        for seq, line in enumerate(lines, start=first)
    ]
    sql.write(Insert(_INSERT_LINES, rows))


def _append(conn: Connection, run_id: str, lines: Sequence[NewLogLine]) -> None:
    write_log_lines(DriverSQL(conn), run_id, lines)


def _read(conn: Connection, query: Any) -> list[LogRecord]:
    return [
        LogRecord(
            run_id=row.run_id,
            seq=row.seq,
            step=row.step,
            attempt=row.attempt,
            at=row.at,
            level=row.level,
            message=row.message,
            source=_source(row.source),
            trace_id=row.trace_id,
            span_id=row.span_id,
        )
        for row in conn.execute(query)
    ]


class LogStore:
    """The step logs of every run."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, run_id: str, lines: Sequence[NewLogLine]) -> None:
        """Append `lines` to the run's log in one transaction, numbered after its last line.
        An unknown run raises UnknownRun."""
        if not lines:
            return
        for tries_left in reversed(range(_APPEND_TRIES)):
            try:
                await self.db.transaction(_append, run_id, lines)
                return
            except IntegrityError:
                if not tries_left:
                    raise

    async def read(
        self,
        run_id: str,
        *,
        step: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[LogRecord]:
        """The run's lines after `after_seq` in order, only `step`'s when given (none for
        an unknown run)."""
        query = (
            select(STEP_LOGS)
            .where(STEP_LOGS.c.run_id == run_id, STEP_LOGS.c.seq > after_seq)
            .order_by(STEP_LOGS.c.seq)
        )
        if step is not None:
            query = query.where(STEP_LOGS.c.step == step)
        if limit is not None:
            query = query.limit(limit)
        return await self.db.transaction(_read, query)


__all__ = [
    "LOG_LEVELS",
    "LOG_SOURCES",
    "STEP_LOGS",
    "LogRecord",
    "LogSource",
    "LogStore",
    "NewLogLine",
    "StepLogRow",
    "write_log_lines",
]
