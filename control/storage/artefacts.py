"""Step artefacts: the input and output of every step attempt, content-addressed.

A body is the canonical JSON of the value (secret values already masked by the caller, see
`artefact_body`), stored once per distinct sha256 in `artefact_blobs`; each attempt links
to it from `step_artefacts` (run, step, attempt, kind input|output). A body larger than the
size limit is recorded by digest and size with no body (`truncated`). `prune` drops the
links of runs finished before a cutoff, then every blob no link needs any more.

The scheduler writes a decision's artefacts in the transaction that appends its events
(`AppendRequest.artefacts`, whose rows `artefact_inserts` makes): a step's result and its output
artefact are stored together or not at all, and capture costs no commit of its own
(bench/audit.py measures what it does cost). `capture` writes artefacts on their own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    delete,
    exists,
    select,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from flowforge.runtime.canonical import canonical_json
from flowforge.runtime.secrets import Scrubber

from .database import Database
from .driver_sql import DriverSQL, Insert
from .errors import StorageError
from .models import RUNS, Base, UTCDateTime, _table

MAX_BYTES_ENV: Final = "FLOWFORGE_ARTEFACT_MAX_BYTES"
DEFAULT_MAX_BYTES: Final = 1024 * 1024
Kind = Literal["input", "output"]
KINDS: Final = ("input", "output")


class ArtefactBlobRow(Base):
    """One distinct body; `body` is NULL when it was over the size limit."""

    __tablename__ = "artefact_blobs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StepArtefactRow(Base):
    """Which body was a step attempt's input or output."""

    __tablename__ = "step_artefacts"
    __table_args__ = (Index("ix_step_artefacts_digest", "digest"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    step: Mapped[str] = mapped_column(String(255), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("artefact_blobs.digest"))
    size: Mapped[int] = mapped_column(BigInteger)
    truncated: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


BLOBS: Final = _table(ArtefactBlobRow)
LINKS: Final = _table(StepArtefactRow)


class ArtefactError(StorageError):
    """An artefact that cannot be read as asked; the message says why."""


@dataclass(frozen=True)
class NewArtefact:
    step: str
    attempt: int
    kind: Kind
    body: bytes  # from artefact_body


@dataclass(frozen=True)
class ArtefactRef:
    run_id: str
    step: str
    attempt: int
    kind: str
    digest: str
    size: int
    truncated: bool
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "step": self.step,
            "attempt": self.attempt,
            "kind": self.kind,
            "digest": self.digest,
            "size": self.size,
            "truncated": self.truncated,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class PruneReport:
    links: int  # step artefact links removed
    blobs: int  # bodies no longer linked, removed


def artefact_body(value: Any, secrets: Mapping[str, str] | None = None) -> bytes:
    """The canonical JSON bytes of `value` with every one of `secrets`' values masked:
    what is hashed and stored, so no secret value ever reaches the table."""
    body = canonical_json(value)
    if not secrets:
        return body
    masked = Scrubber(secrets).json(body.decode("utf-8"))
    return canonical_json(json.loads(masked))


def default_max_bytes() -> int:
    """`$FLOWFORGE_ARTEFACT_MAX_BYTES`, else 1 MiB."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ArtefactError(f"${MAX_BYTES_ENV}={raw!r} is not a whole number of bytes") from None
    if value < 0:
        raise ArtefactError(f"${MAX_BYTES_ENV} must be 0 or more (0 keeps digests only)")
    return value


_INSERT_BLOBS: Final = "INSERT INTO artefact_blobs (digest, size, body, created_at)"
_INSERT_LINKS: Final = (
    "INSERT INTO step_artefacts (run_id, step, attempt, kind, digest, size, truncated, created_at)"
)
_IGNORING_DUPLICATES: Final = " ON CONFLICT DO NOTHING"
_BLOB_TYPES: Final = ("text", "bigint", "bytea", "timestamptz")
_LINK_TYPES: Final = ("text", "text", "integer", "text", "text", "bigint", "boolean", "timestamptz")


def artefact_inserts(
    sql: DriverSQL, entries: Sequence[tuple[str, NewArtefact]], max_bytes: int
) -> tuple[list[Insert], list[ArtefactRef]]:
    """The inserts that store (run id, artefact) pairs, for the caller's transaction (with
    its other inserts: one round trip on PostgreSQL), and what they record: each body once
    per digest (only digest and size when over `max_bytes`), each attempt linked to its
    body; an attempt already linked keeps its first record."""
    now = datetime.now(UTC)
    stamp = sql.timestamp(now)
    blobs: dict[str, tuple[str, int, bytes | None, object]] = {}
    links: dict[tuple[str, str, int, str], ArtefactRef] = {}
    for run_id, item in entries:
        digest = hashlib.sha256(item.body).hexdigest()
        size = len(item.body)
        truncated = size > max_bytes
        blobs.setdefault(digest, (digest, size, None if truncated else item.body, stamp))
        ref = ArtefactRef(run_id, item.step, item.attempt, item.kind, digest, size, truncated, now)
        links.setdefault((run_id, item.step, item.attempt, item.kind), ref)
    link_rows = [
        (r.run_id, r.step, r.attempt, r.kind, r.digest, r.size, r.truncated, stamp)
        for r in links.values()
    ]
    # Sorted, so that two writers on PostgreSQL take the blob rows' locks in one order.
    inserts = [
        Insert(_INSERT_BLOBS, [blobs[d] for d in sorted(blobs)], _IGNORING_DUPLICATES, _BLOB_TYPES),
        Insert(_INSERT_LINKS, link_rows, _IGNORING_DUPLICATES, _LINK_TYPES),
    ]
    return inserts, list(links.values())


def _capture(
    conn: Connection, entries: Sequence[tuple[str, NewArtefact]], max_bytes: int
) -> list[ArtefactRef]:
    sql = DriverSQL(conn)
    inserts, refs = artefact_inserts(sql, entries, max_bytes)
    sql.write(*inserts)
    return refs


def _ref(row: Row[Any]) -> ArtefactRef:
    return ArtefactRef(
        row.run_id,
        row.step,
        row.attempt,
        row.kind,
        row.digest,
        row.size,
        bool(row.truncated),
        row.created_at,
    )


def _list(conn: Connection, run_id: str, step: str | None) -> list[ArtefactRef]:
    query = (
        select(LINKS)
        .where(LINKS.c.run_id == run_id)
        .order_by(LINKS.c.created_at, LINKS.c.step, LINKS.c.attempt, LINKS.c.kind)
    )
    if step is not None:
        query = query.where(LINKS.c.step == step)
    return [_ref(row) for row in conn.execute(query)]


def _get(conn: Connection, digest: str) -> Row[Any] | None:
    return conn.execute(select(BLOBS).where(BLOBS.c.digest == digest)).first()


def _prune(conn: Connection, cutoff: datetime) -> PruneReport:
    old_runs = select(RUNS.c.id).where(RUNS.c.finished_at.is_not(None), RUNS.c.finished_at < cutoff)
    links = conn.execute(delete(LINKS).where(LINKS.c.run_id.in_(old_runs))).rowcount
    linked = exists().where(LINKS.c.digest == BLOBS.c.digest)
    blobs = conn.execute(delete(BLOBS).where(~linked)).rowcount
    return PruneReport(links, blobs)


class ArtefactStore:
    """Capture, list, fetch and prune step artefacts."""

    def __init__(self, db: Database, max_bytes: int | None = None) -> None:
        self.db = db
        # Read once: a scheduler captures with the limit it was started with.
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes

    async def capture(self, run_id: str, items: Sequence[NewArtefact]) -> list[ArtefactRef]:
        """Record the bodies (once per digest) and link them to their step attempts, now,
        in a transaction of their own."""
        if not items:
            return []
        entries = [(run_id, item) for item in items]
        return await self.db.transaction(_capture, entries, self.max_bytes)

    async def list(self, run_id: str, *, step: str | None = None) -> list[ArtefactRef]:
        """The run's artefacts in the order they were captured."""
        return await self.db.transaction(_list, run_id, step)

    async def get(self, digest: str) -> bytes:
        """The body of `digest`; ArtefactError when unknown or when only its digest was kept."""
        row = await self.db.transaction(_get, digest.strip().lower())
        if row is None:
            raise ArtefactError(
                f"no artefact {digest!r}: list the run's artefacts for their digests "
                "(it may have been pruned)"
            )
        if row.body is None:
            raise ArtefactError(
                f"artefact {digest} ({row.size} bytes) was over the size limit when captured: "
                f"only its digest and size were kept (raise ${MAX_BYTES_ENV} to keep bodies)"
            )
        return bytes(row.body)

    async def prune(self, cutoff: datetime) -> PruneReport:
        """Remove the links of runs finished before `cutoff`, then the unlinked bodies."""
        try:
            return await self.db.transaction(_prune, cutoff)
        except IntegrityError:
            # A capture linked a body this prune was removing; once more sees that link.
            return await self.db.transaction(_prune, cutoff)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "MAX_BYTES_ENV",
    "ArtefactError",
    "ArtefactRef",
    "ArtefactStore",
    "NewArtefact",
    "PruneReport",
    "artefact_body",
    "artefact_inserts",
    "default_max_bytes",
]
