"""The audit log: who did what, when, to which target, as a hash chain.

Each row's `hash` is the sha256 of the canonical JSON of
`{"seq", "at", "actor", "action", "target", "details", "prev_hash"}` (`at` in ISO 8601 with
microseconds, UTC), and `prev_hash` is the hash of the row before it (64 zeros for the
first). Editing a row breaks its own hash; deleting one leaves a gap in `seq` (or, when the
rest are renumbered, hashes that no longer fit); swapping two rows breaks both links. Only
dropping the newest rows (and the head row with them) leaves a shorter chain that is still
whole: keep the last hash of an export somewhere else and verify against it (`anchor`).

Appends serialize on the one-row `audit_head` table: the first statement of an append
updates it, which takes PostgreSQL's row lock (and SQLite's write lock) until the
transaction ends, so two writers never read the same tail and never fork the chain.

Details name things; they never hold a secret value.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import BigInteger, Index, Integer, String, Text, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Mapped, mapped_column

from flowforge.runtime.canonical import canonical_json

from .database import Database
from .errors import StorageError
from .models import Base, UTCDateTime, _table

GENESIS_HASH: Final = "0" * 64
HEAD_ID: Final = 1

# The actions recorded (exact strings; the servicers, CLI commands and scheduler use these).
WORKFLOW_SUBMIT: Final = "workflow.submit"
RUN_START: Final = "run.start"
RUN_CANCEL: Final = "run.cancel"
RUN_APPROVE: Final = "run.approve"
RUN_REJECT: Final = "run.reject"
RUN_RETRY: Final = "run.retry"
SECRET_SET: Final = "secret.set"
SECRET_READ: Final = "secret.read"
TOKEN_CREATE: Final = "token.create"
TOKEN_REVOKE: Final = "token.revoke"
TRUST_ADD: Final = "trust.add"
TRUST_REVOKE: Final = "trust.revoke"
MARKETPLACE_PUBLISH: Final = "marketplace.publish"
MARKETPLACE_YANK: Final = "marketplace.yank"
MARKETPLACE_INSTALL: Final = "marketplace.install"
ACTIONS: Final = frozenset(
    {
        WORKFLOW_SUBMIT,
        RUN_START,
        RUN_CANCEL,
        RUN_APPROVE,
        RUN_REJECT,
        RUN_RETRY,
        SECRET_SET,
        SECRET_READ,
        TOKEN_CREATE,
        TOKEN_REVOKE,
        TRUST_ADD,
        TRUST_REVOKE,
        MARKETPLACE_PUBLISH,
        MARKETPLACE_YANK,
        MARKETPLACE_INSTALL,
    }
)
# New kinds of action may be added without a change here, but they must look like these.
_ACTION_FORM: Final = re.compile(r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$")
_PAGE: Final = 1000


class AuditRow(Base):
    """One audit entry; `seq` counts from 1 without gaps."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action", "action", "seq"),
        Index("ix_audit_log_hash", "hash", unique=True),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON object
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain's newest seq and hash: the row every append locks (one row, id 1)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


AUDIT_LOG: Final = _table(AuditRow)
AUDIT_HEAD: Final = _table(AuditHeadRow)


class AuditError(StorageError):
    """An audit entry that cannot be recorded as given."""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The record as one JSON object (what `audit export` writes per line)."""
        return {
            "seq": self.seq,
            "at": iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Tampering:
    """The first row where the chain does not hold, and why."""

    seq: int
    kind: str  # edited | deleted | reordered | relinked | truncated | anchor
    message: str


@dataclass(frozen=True)
class VerifyReport:
    rows: int  # rows checked
    last_seq: int
    last_hash: str  # keep it elsewhere: it is the anchor a later verify checks against
    problem: Tampering | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def intact(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        problem = None
        if self.problem is not None:
            p = self.problem
            problem = {"seq": p.seq, "kind": p.kind, "message": p.message}
        return {
            "intact": self.intact,
            "rows": self.rows,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "problem": problem,
            "notes": list(self.notes),
        }


def local_actor() -> str:
    """Who a command run on this machine (not through the API) is recorded as."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        user = f"uid{os.getuid()}"
    return f"local:{user}"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    seq: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The hash of one entry (`at` as written in the export: ISO 8601, microseconds)."""
    body = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "details": dict(details),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def record_hash(
    record: AuditRecord, *, seq: int | None = None, prev_hash: str | None = None
) -> str:
    """What `record`'s hash should be; with `seq`/`prev_hash`, what it would be had it been
    written there (how a moved row is recognised)."""
    return entry_hash(
        record.seq if seq is None else seq,
        iso(record.at),
        record.actor,
        record.action,
        record.target,
        record.details,
        record.prev_hash if prev_hash is None else prev_hash,
    )


def _record(row: Row[Any]) -> AuditRecord:
    try:
        details = json.loads(row.details)
    except ValueError:
        details = {"unparsable": row.details}  # an edited row; its hash will not match
    return AuditRecord(
        row.seq,
        row.at,
        row.actor,
        row.action,
        row.target,
        details if isinstance(details, dict) else {"value": details},
        row.prev_hash,
        row.hash,
    )


# --- transactions -----------------------------------------------------------------------

_TAKE_HEAD: Final = (
    update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == HEAD_ID).values(seq=AUDIT_HEAD.c.seq + 1)
)
_READ_HEAD: Final = select(AUDIT_HEAD.c.seq, AUDIT_HEAD.c.hash).where(AUDIT_HEAD.c.id == HEAD_ID)


def _append(
    conn: Connection, actor: str, action: str, target: str, details: dict[str, Any]
) -> AuditRecord:
    # The update first: it is the lock that orders concurrent appends (see the module doc).
    if conn.execute(_TAKE_HEAD).rowcount != 1:
        raise AuditError("the audit_head row is missing: the audit log's schema is damaged")
    seq, prev_hash = conn.execute(_READ_HEAD).one()
    at = datetime.now(UTC)
    digest = entry_hash(seq, iso(at), actor, action, target, details, prev_hash)
    conn.execute(
        AUDIT_LOG.insert(),
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "target": target,
            "details": canonical_json(details).decode("utf-8"),
            "prev_hash": prev_hash,
            "hash": digest,
        },
    )
    conn.execute(update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == HEAD_ID).values(hash=digest))
    return AuditRecord(seq, at, actor, action, target, details, prev_hash, digest)


def _page(conn: Connection, after_seq: int, limit: int) -> list[AuditRecord]:
    query = (
        select(AUDIT_LOG).where(AUDIT_LOG.c.seq > after_seq).order_by(AUDIT_LOG.c.seq).limit(limit)
    )
    return [_record(row) for row in conn.execute(query)]


def _by_hash(conn: Connection, digest: str) -> AuditRecord | None:
    row = conn.execute(select(AUDIT_LOG).where(AUDIT_LOG.c.hash == digest)).first()
    return _record(row) if row is not None else None


def _by_seq(conn: Connection, seq: int) -> AuditRecord | None:
    row = conn.execute(select(AUDIT_LOG).where(AUDIT_LOG.c.seq == seq)).first()
    return _record(row) if row is not None else None


def _head(conn: Connection) -> tuple[int, str] | None:
    row = conn.execute(_READ_HEAD).first()
    return (row.seq, row.hash) if row is not None else None


def _list(conn: Connection, limit: int, action: str | None, actor: str | None) -> list[AuditRecord]:
    query = select(AUDIT_LOG).order_by(AUDIT_LOG.c.seq.desc()).limit(limit)
    if action is not None:
        query = query.where(AUDIT_LOG.c.action == action)
    if actor is not None:
        query = query.where(AUDIT_LOG.c.actor == actor)
    return [_record(row) for row in conn.execute(query)]


# --- verification -----------------------------------------------------------------------


class _Walk:
    """Checks rows one by one in seq order; `problem` is the first break found."""

    def __init__(self) -> None:
        self.rows = 0
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.problem: Tampering | None = None
        self.pending: AuditRecord | None = None  # a row whose diagnosis needs the next one


def _diagnose_link(record: AuditRecord, expected_prev: str, found: AuditRecord | None) -> Tampering:
    """Row `record` does not link to the row before it; `found` is the row whose hash its
    prev_hash names, if any."""
    n = record.seq
    if found is None:
        if record_hash(record) == record.hash:
            return Tampering(
                n - 1,
                "relinked",
                f"row {n - 1} is not the row that row {n} was chained to (row {n}'s prev_hash "
                f"{record.prev_hash[:12]}... names no row): row {n - 1} was rewritten or replaced",
            )
        return Tampering(
            n,
            "deleted",
            f"row {n} links to a row that is no longer in the log: a row before it was "
            "deleted and the rows after it renumbered",
        )
    for written_at in sorted({found.seq + 1, n - 2, n - 1, n + 1, n + 2} - {n}):
        if written_at > 0 and record_hash(record, seq=written_at) == record.hash:
            return Tampering(
                n,
                "reordered",
                f"row {n} holds the entry written as row {written_at}: rows "
                f"{min(n, written_at)} and {max(n, written_at)} were swapped (or moved)",
            )
    return Tampering(
        n,
        "edited",
        f"row {n} does not match its hash and does not link to row {n - 1} "
        f"(expected prev_hash {expected_prev[:12]}..., found {record.prev_hash[:12]}...)",
    )


class AuditLog:
    """Append entries; list, export and verify the chain."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Record that `actor` did `action` to `target`; returns the chained entry.

        `details` is a JSON object of names and ids (never a secret value)."""
        if not _ACTION_FORM.match(action):
            raise AuditError(f"audit action {action!r} is not of the form 'noun.verb'")
        if not actor or not target:
            raise AuditError("an audit entry needs an actor and a target")
        body = dict(details or {})
        try:
            canonical_json(body)
        except (TypeError, ValueError) as exc:
            raise AuditError(f"audit details for {action} are not JSON: {exc}") from exc
        return await self.db.transaction(_append, actor, action, target, body)

    async def list(
        self, *, limit: int = 50, action: str | None = None, actor: str | None = None
    ) -> list[AuditRecord]:
        """The newest entries first."""
        if limit < 1:
            raise ValueError("limit is at least 1")
        return await self.db.transaction(_list, limit, action, actor)

    async def export(self, *, since: int = 0) -> AsyncIterator[AuditRecord]:
        """Every entry after seq `since`, oldest first, read a page at a time."""
        after = since
        while True:
            page = await self.db.transaction(_page, after, _PAGE)
            for record in page:
                yield record
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    async def head(self) -> tuple[int, str]:
        """The newest seq and hash as the chain head records them."""
        found = await self.db.transaction(_head)
        if found is None:
            raise AuditError("the audit_head row is missing: the audit log's schema is damaged")
        return found

    async def verify(self, *, anchor: str | None = None) -> VerifyReport:
        """Walk the whole chain; the report names the first row that does not hold.

        With `anchor` (a hash kept from an earlier export or verify), also check that the
        chain still holds that entry: a truncated or rewritten tail is found that way only.
        """
        walk = _Walk()
        after = 0
        while walk.problem is None:
            page = await self.db.transaction(_page, after, _PAGE)
            for record in page:
                await self._check(walk, record)
                if walk.problem is not None:
                    break
            if len(page) < _PAGE:
                break
            after = page[-1].seq
        notes: list[str] = []
        if walk.problem is None:
            await self._check_head(walk)
        if walk.problem is None and anchor is not None:
            await self._check_anchor(walk, anchor.strip().lower())
        if walk.problem is None and anchor is None:
            notes.append(
                "without an anchor a removed tail cannot be told from a shorter log: keep "
                f"the last hash ({walk.last_hash}) elsewhere and verify with --anchor"
            )
        return VerifyReport(walk.rows, walk.last_seq, walk.last_hash, walk.problem, tuple(notes))

    async def _check(self, walk: _Walk, record: AuditRecord) -> None:
        expected_seq = walk.last_seq + 1
        if record.seq != expected_seq:
            missing = (
                f"row {expected_seq}"
                if record.seq == expected_seq + 1
                else f"rows {expected_seq} to {record.seq - 1}"
            )
            walk.problem = Tampering(
                expected_seq,
                "deleted",
                f"{missing} missing: row {record.seq} follows row {walk.last_seq}",
            )
            return
        if record.prev_hash != walk.last_hash:
            found = await self.db.transaction(_by_hash, record.prev_hash)
            walk.problem = _diagnose_link(record, walk.last_hash, found)
            return
        if record_hash(record) != record.hash:
            walk.problem = await self._diagnose_hash(record)
            return
        walk.rows += 1
        walk.last_seq = record.seq
        walk.last_hash = record.hash

    async def _diagnose_hash(self, record: AuditRecord) -> Tampering:
        """Row `record` links correctly but its content does not match its hash."""
        n = record.seq
        # A swapped pair n, n+1 links correctly at n only when the entry now at n was
        # written at n; otherwise its content (with its own hash) was edited.
        later = await self.db.transaction(_by_seq, n + 1)
        if (
            later is not None
            and record_hash(later, seq=n, prev_hash=record.prev_hash) == record.hash
        ):
            return Tampering(
                n, "reordered", f"rows {n} and {n + 1} were swapped (their contents exchanged)"
            )
        return Tampering(
            n,
            "edited",
            f"row {n} was edited: its content does not match its hash "
            f"({record.action} by {record.actor} on {record.target})",
        )

    async def _check_head(self, walk: _Walk) -> None:
        head = await self.db.transaction(_head)
        if head is None:
            walk.problem = Tampering(
                walk.last_seq, "truncated", "the audit_head row is missing (the head was deleted)"
            )
            return
        head_seq, head_hash = head
        if head_seq > walk.last_seq:
            walk.problem = Tampering(
                walk.last_seq + 1,
                "truncated",
                f"rows {walk.last_seq + 1} to {head_seq} missing: the chain head records "
                f"row {head_seq} but the log ends at row {walk.last_seq}",
            )
        elif head_seq == walk.last_seq and head_hash != walk.last_hash:
            walk.problem = Tampering(
                walk.last_seq,
                "edited",
                f"row {walk.last_seq}'s hash differs from the one the chain head recorded",
            )
        # head_seq < last_seq: an append committed between our read and the head's; fine.

    async def _check_anchor(self, walk: _Walk, anchor: str) -> None:
        found = await self.db.transaction(_by_hash, anchor)
        if found is None or found.seq > walk.last_seq:
            walk.problem = Tampering(
                walk.last_seq + 1,
                "anchor",
                f"the anchor {anchor} is not in the log: rows after row {walk.last_seq} "
                "were removed (the tail was truncated) or rewritten",
            )


__all__ = [
    "ACTIONS",
    "AUDIT_HEAD",
    "AUDIT_LOG",
    "GENESIS_HASH",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "Tampering",
    "VerifyReport",
    "entry_hash",
    "iso",
    "local_actor",
    "record_hash",
]
