"""The run event log: append-only, one sequence per run, optimistic concurrency, and
idempotency keys so a redelivered result is applied once.

An append is one transaction (or a share of one: `append_many` writes several runs'
appends with one commit): drop the events whose idempotency key the run already holds,
compare-and-set the run's `last_seq` (a stale `expected_seq` is a `ConcurrencyConflict`),
insert the events, refresh the run's cached status, and set or clear the run's timers.
What the same decision records besides its events (step log lines, step artefacts) rides in
the same transaction: it is stored with the events or not at all, and costs no commit of
its own.
The statements of the hot path are built once, with bind parameters, so each append only
binds values (building and cache-keying a statement costs more than running it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from flowforge.runtime.canonical import canonical_json

from .artefacts import NewArtefact, artefact_inserts
from .database import Database
from .driver_sql import DriverSQL, Insert, Statement, placeholders
from .errors import ConcurrencyConflict, DuplicateRun, RunFinished, StorageError, UnknownRun
from .logs import NewLogLine, write_log_lines
from .models import EVENTS, RUNS, TIMERS
from .records import (
    UNFINISHED,
    Appended,
    Event,
    EventType,
    NewEvent,
    RunPage,
    RunRecord,
    RunStatus,
    Timer,
    TimerKind,
)
from .state import advance_status, advance_waiting

# The hot path's statements (see driver_sql.py). The run's row and, joined to it, which
# of the given idempotency keys it already holds: one round trip for both checks.
_RUN_AND_KEYS: Final = (
    "SELECT runs.last_seq, runs.status, runs.waiting_approval, events.idempotency_key "
    "FROM runs LEFT OUTER JOIN events ON events.run_id = runs.id "
    "AND events.idempotency_key IN ({keys}) WHERE runs.id = ?"
)
_RUN: Final = "SELECT last_seq, status, waiting_approval, NULL FROM runs WHERE id = ?"
# The first try's claim (see `_claim_group`): the row must hold what the caller expects,
# seq, status and waiting steps, since the new ones were folded over those. One statement
# claims a whole group's runs, from a list of (run, new seq, new status, new waiting,
# finished at, expected seq, expected status, expected waiting, updated at).
_CLAIM_COLUMNS: Final = (
    "text", "bigint", "text", "text", "timestamptz", "bigint", "text", "text", "timestamptz"
)  # fmt: skip
_CLAIM_SET: Final = (
    "UPDATE runs SET last_seq = v.column2, status = v.column3, waiting_approval = v.column4, "
    "finished_at = v.column5, updated_at = v.column9 FROM {source} "
    "WHERE runs.id = v.column1 AND runs.last_seq = v.column6 AND runs.status = v.column7 "
    "AND runs.waiting_approval = v.column8"
)
# On SQLite the statement must begin with UPDATE (see driver_sql.py).
_CLAIM_GROUP_SQLITE: Final = (
    _CLAIM_SET.replace("{source}", "({values}) AS v") + " RETURNING runs.id"
)
# PostgreSQL locks the rows first, in id order, as two groups of overlapping runs must
# (else each could hold a row the other waits for); SQLite locks the whole file.
_CLAIM_GROUP_POSTGRESQL: Final = (
    "WITH v AS ({values}), l AS MATERIALIZED (SELECT runs.id FROM runs JOIN v "
    "ON runs.id = v.column1 ORDER BY runs.id FOR UPDATE OF runs) "
    + _CLAIM_SET.replace("{source}", "v")
    + " AND runs.id IN (SELECT id FROM l) RETURNING runs.id"
)
_CLAIMS_PER_STATEMENT: Final = 100  # 9 values each: under SQLite's 999
# A lone append's claim (`_in_one_statement`).
_CLAIM_EXPECTED: Final = (
    "UPDATE runs SET last_seq = ?, status = ?, waiting_approval = ?, finished_at = ?, "
    "updated_at = ? WHERE id = ? AND last_seq = ? AND status = ? AND waiting_approval = ? "
    "RETURNING id"
)
_EVENT_TYPES: Final = ("text", "bigint", "text", "text", "timestamptz", "text")
_CAS: Final = (
    "UPDATE runs SET last_seq = ?, status = ?, waiting_approval = ?, finished_at = ?, "
    "updated_at = ? WHERE id = ? AND last_seq = ?"
)
_RUN_COLUMNS: Final = (
    "id",
    "workflow",
    "version",
    "project",
    "input",
    "status",
    "last_seq",
    "waiting_approval",
)
_INSERT_RUNS: Final = (
    "INSERT INTO runs ({}, status, waiting_approval, finished_at, created_at, updated_at)".format(
        ", ".join(c for c in _RUN_COLUMNS if c not in ("status", "waiting_approval"))
    )
)
_INSERT_EVENTS: Final = "INSERT INTO events (run_id, seq, type, data, at, idempotency_key)"
_DELETE_TIMERS: Final = "DELETE FROM timers WHERE run_id IN ({ids})"
_IDS_PER_STATEMENT: Final = 500
_DELETE_SOME_TIMERS: Final = "DELETE FROM timers WHERE run_id = ? AND key IN ({keys})"
_INSERT_TIMERS: Final = "INSERT INTO timers (run_id, key, kind, due_at, data)"
_READ: Final = (
    select(EVENTS)
    .where(EVENTS.c.run_id == bindparam("run"), EVENTS.c.seq > bindparam("after"))
    .order_by(EVENTS.c.seq)
)
_LAST_SEQ: Final = select(RUNS.c.last_seq).where(RUNS.c.id == bindparam("run"))


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One run's append (or, with `new_run`, its creation) for `EventStore.append_many`,
    with the step log lines and artefacts of the same decision (written only when its
    events are: not for an append whose events were all stored already)."""

    run_id: str
    expected_seq: int
    events: Sequence[NewEvent]
    set_timers: Sequence[Timer] = ()
    clear_timers: Collection[str] = ()
    new_run: dict[str, Any] | None = None  # the run's row, from `new_run_row`
    logs: Sequence[NewLogLine] = ()
    artefacts: Sequence[NewArtefact] = ()
    # What the caller's own fold says the run's row holds before these events: lets
    # PostgreSQL write the append in one statement when it is right (see `_in_one_statement`).
    stored_status: RunStatus | None = None
    stored_waiting: tuple[str, ...] = ()


def new_run_row(
    run_id: str, *, workflow: str, version: str, project: str, input: Any
) -> dict[str, Any]:
    """The runs-table row of a run about to be created."""
    return {
        "id": run_id,
        "workflow": workflow,
        "version": version,
        "project": project,
        "input": _json(input),
        "finished_at": None,
        "status": RunStatus.PENDING.value,
        "last_seq": 0,
        "waiting_approval": "[]",
    }


def _json(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def _record(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        workflow=row.workflow,
        version=row.version,
        project=row.project,
        input=json.loads(row.input),
        status=RunStatus(row.status),
        last_seq=row.last_seq,
        waiting_approval=tuple(json.loads(row.waiting_approval)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _encode_cursor(record: RunRecord) -> str:
    raw = canonical_json([record.created_at.isoformat(), record.id])
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        return datetime.fromisoformat(created), str(run_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a run listing cursor: {cursor!r}") from exc


def _last_seq(conn: Connection, run_id: str) -> int | None:
    value: int | None = conn.execute(_LAST_SEQ, {"run": run_id}).scalar_one_or_none()
    return value


def _fresh(events: Sequence[NewEvent], held: set[str]) -> tuple[list[NewEvent], tuple[str, ...]]:
    """The events to store, and the keys dropped (held by the run or earlier in the batch)."""
    fresh: list[NewEvent] = []
    duplicates: list[str] = []
    for new in events:
        if new.key is not None:
            if new.key in held:
                duplicates.append(new.key)
                continue
            held.add(new.key)
        fresh.append(new)
    return fresh, tuple(duplicates)


@dataclass
class _GroupWrites:
    """What a group's appends write once their checks are done: together, in one
    statement on PostgreSQL (`DriverSQL.write`)."""

    event_rows: list[tuple[Any, ...]] = field(default_factory=list)
    artefacts: list[tuple[str, NewArtefact]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # runs whose timers all go

    def flush(self, sql: DriverSQL, artefact_max_bytes: int) -> None:
        for start in range(0, len(self.finished), _IDS_PER_STATEMENT):
            ids = self.finished[start : start + _IDS_PER_STATEMENT]
            sql.execute(_DELETE_TIMERS.format(ids=placeholders(len(ids))), ids)
        writes = [_events_insert(self.event_rows)]
        if self.artefacts:
            writes += artefact_inserts(sql, self.artefacts, artefact_max_bytes)[0]
        sql.write(*writes)
        self.event_rows, self.artefacts, self.finished = [], [], []


_Checked = tuple["_Folded", tuple[str, ...]]  # a request's fold, and the keys it dropped


@dataclass(frozen=True, slots=True)
class _Folded:
    """A request's events folded over the run's row: what its row holds after them."""

    events: tuple[Event, ...]
    status: RunStatus
    waiting: str  # the JSON list the row keeps
    last_seq: int

    def row(self, stamp: object) -> list[object]:
        """status, waiting_approval, finished_at, as the row takes them."""
        return [self.status.value, self.waiting, stamp if self.status.finished else None]


def _fold(
    request: AppendRequest,
    fresh: Sequence[NewEvent],
    status: RunStatus,
    waiting: Collection[str],
    now: datetime,
) -> _Folded:
    held = set(waiting)
    stored: list[Event] = []
    for offset, new in enumerate(fresh, start=request.expected_seq + 1):
        data = dict(new.data)
        stored.append(Event(request.run_id, offset, new.type, data, new.at or now, new.key))
        advance_waiting(held, new.type, data)
        status = advance_status(status, new.type, bool(held))
    return _Folded(tuple(stored), status, _json(sorted(held)), request.expected_seq + len(stored))


def _claim_expected(request: AppendRequest, folded: _Folded, stamp: object) -> Statement:
    """The claim of the run's row for `folded`, if the row holds what `request` says."""
    where = [request.run_id, request.expected_seq, *_said(request)]
    return Statement(_CLAIM_EXPECTED, [folded.last_seq, *folded.row(stamp), stamp, *where])


def _said(request: AppendRequest) -> list[object]:
    """What `request` says the run's row holds: status and waiting steps."""
    assert request.stored_status is not None
    return [request.stored_status.value, _json(sorted(request.stored_waiting))]


def _fold_said(request: AppendRequest, now: datetime) -> _Folded:
    """The request's events folded over what it says the run's row holds."""
    assert request.stored_status is not None
    return _fold(request, request.events, request.stored_status, request.stored_waiting, now)


def _claimable(request: AppendRequest) -> bool:
    """Whether a first try may claim the run for `request` without reading it first: it
    says what the row holds, and its events repeat no key among themselves."""
    keys = [e.key for e in request.events if e.key is not None]
    return (
        request.new_run is None
        and request.stored_status is not None
        and bool(request.events)
        and len(set(keys)) == len(keys)
    )


def _claim_group(
    sql: DriverSQL,
    requests: Sequence[AppendRequest],
    also_lock: Sequence[AppendRequest],
    now: datetime,
) -> dict[str, _Checked]:
    """Claim, in one statement, the runs of `requests` (one each, all `_claimable`) whose
    rows hold what the requests say; the claimed runs' folds. On PostgreSQL the same
    statement locks the runs of `also_lock` (claiming none): every run of a round is
    locked at once, in id order."""
    stamp = sql.timestamp(now)
    folds = {r.run_id: _fold_said(r, now) for r in requests}
    rows = [
        [r.run_id, fold.last_seq, *fold.row(stamp), r.expected_seq, *_said(r), stamp]
        for r in requests
        for fold in (folds[r.run_id],)
    ]
    # No row holds seq -1: these lock and claim nothing.
    rows += [[r.run_id, 0, "", "[]", None, -1, "", "", stamp] for r in also_lock]
    rows.sort(key=lambda row: str(row[0]))
    template = _CLAIM_GROUP_SQLITE if sql.sqlite else _CLAIM_GROUP_POSTGRESQL
    claimed: dict[str, _Checked] = {}
    for start in range(0, len(rows), _CLAIMS_PER_STATEMENT):
        values, params = sql.values(rows[start : start + _CLAIMS_PER_STATEMENT], _CLAIM_COLUMNS)
        for (run_id,) in sql.rows(template.format(values=values), params):
            claimed[run_id] = (folds[run_id], ())
    return claimed


def _insert_new_runs(
    sql: DriverSQL, requests: Sequence[AppendRequest], now: datetime
) -> dict[str, _Checked]:
    """The rows of the new runs of `requests`, in one statement, with what their events
    make of them (before anything that refers to them); their folds."""
    stamp = sql.timestamp(now)
    checked: dict[str, _Checked] = {}
    rows: list[list[Any]] = []
    for request in requests:
        assert request.new_run is not None
        fresh, duplicates = _fresh(request.events, set())
        folded = _fold(request, fresh, RunStatus.PENDING, (), now)
        row = {**request.new_run, "last_seq": folded.last_seq}
        values = [row[c] for c in _RUN_COLUMNS if c not in ("status", "waiting_approval")]
        rows.append([*values, *folded.row(stamp), stamp, stamp])
        checked[request.run_id] = (folded, duplicates)
    sql.write(Insert(_INSERT_RUNS, rows))
    return checked


def _event_rows(sql: DriverSQL, run_id: str, folded: _Folded) -> list[tuple[Any, ...]]:
    return [
        (run_id, e.seq, e.type.value, _json(e.data), sql.timestamp(e.at), e.key)
        for e in folded.events
    ]


def _events_insert(rows: Sequence[tuple[Any, ...]]) -> Insert:
    return Insert(_INSERT_EVENTS, rows, types=_EVENT_TYPES)


def _append(
    sql: DriverSQL,
    request: AppendRequest,
    writes: _GroupWrites,
    checked: _Checked | None,
    now: datetime,
) -> Appended:
    """Check and record one request; its events and artefacts go to `writes` for the
    group's one write.

    `checked` is the fold of a request whose checks the group's first statements made: a
    new run's (its row is in), or one whose run `_claim_group` claimed (its row held what
    the request says, the scheduler's own fold). Its events are written as they are,
    assuming what a group commit almost always finds, that the run holds none of their
    keys. A stored key makes the events' insert fail, and the group is then written again
    carefully, one transaction each (`EventStore.append_many`). The careful way, for the
    rest, reads the run and its keys first, and drops the events whose keys it holds."""
    if checked is not None:
        return _write_events(sql, request, writes, *checked)
    run_id, expected, events = request.run_id, request.expected_seq, request.events
    stamp = sql.timestamp(now)
    keys = [e.key for e in events if e.key is not None]
    if keys:
        query = _RUN_AND_KEYS.format(keys=placeholders(len(set(keys))))
        rows = sql.rows(query, [*sorted(set(keys)), run_id])
    else:
        rows = sql.rows(_RUN, [run_id])
    if not rows:
        raise UnknownRun(run_id)
    stored_seq, stored_status, stored_waiting, _key = rows[0]
    fresh, duplicates = _fresh(events, {r[3] for r in rows if r[3]})
    if events and not fresh:
        return Appended(stored_seq, (), duplicates)
    if stored_seq != expected:
        raise ConcurrencyConflict(run_id, expected, stored_seq)
    if fresh and RunStatus(stored_status).finished:
        raise RunFinished(run_id, stored_status)
    folded = _fold(request, fresh, RunStatus(stored_status), json.loads(stored_waiting), now)
    # The compare-and-set; it also takes the run's write lock before the inserts.
    cas = [folded.last_seq, *folded.row(stamp), stamp, run_id, expected]
    if sql.execute(_CAS, cas) != 1:
        raise ConcurrencyConflict(run_id, expected, None)
    return _write_events(sql, request, writes, folded, duplicates)


def _write_events(
    sql: DriverSQL,
    request: AppendRequest,
    writes: _GroupWrites,
    folded: _Folded,
    duplicates: tuple[str, ...],
) -> Appended:
    """The request's events and artefacts to `writes`; its timers and log lines now."""
    run_id = request.run_id
    writes.event_rows += _event_rows(sql, run_id, folded)
    if folded.events or not request.events:
        writes.artefacts.extend((run_id, item) for item in request.artefacts)
    if folded.status.finished:  # a finished run keeps no timers
        writes.finished.append(run_id)
    else:
        _write_timers(sql, run_id, request.set_timers, request.clear_timers)
    if request.logs:
        write_log_lines(sql, run_id, request.logs)
    return Appended(folded.last_seq, folded.events, duplicates)


def _in_one_statement(
    conn: Connection, request: AppendRequest, artefact_max_bytes: int
) -> Appended | None:
    """The append as one statement (PostgreSQL, autocommit: no BEGIN or COMMIT round
    trips), when the run's row holds what the request expects (`stored_status`, its seq)
    and no key among its events is stored (else the insert fails, and nothing is written);
    None when the row did not match: the caller appends the usual way."""
    r = request
    sql = DriverSQL(conn)
    now = datetime.now(UTC)
    stamp = sql.timestamp(now)
    folded = _fold_said(r, now)
    inserts = [_events_insert(_event_rows(sql, r.run_id, folded))]
    if r.artefacts:
        entries = [(r.run_id, item) for item in r.artefacts]
        inserts += artefact_inserts(sql, entries, artefact_max_bytes)[0]
    # A finished run keeps no timers.
    deletes = (
        [Statement(_DELETE_TIMERS.format(ids="?"), [r.run_id])] if folded.status.finished else []
    )
    if not sql.write_if_claimed(_claim_expected(r, folded, stamp), inserts, deletes):
        return None
    return Appended(folded.last_seq, folded.events, ())


def _append_many(
    conn: Connection,
    requests: Sequence[AppendRequest],
    artefact_max_bytes: int,
    careful: bool = False,
) -> list[Appended | StorageError]:
    """Each request as `_append` does it; a conflict is returned in its place. `_append`
    raises those before it writes anything, so the others still commit. The new runs'
    rows, the claims of the other runs (unless `careful`), and then the events and
    artefacts of all the requests go in a statement each: statements, not rows, are what
    an append pays for. A run's second request in the group goes in a round after its
    first's."""
    sql = DriverSQL(conn)
    done: dict[int, Appended | StorageError] = {}
    for round_ in _rounds(requests):
        now = datetime.now(UTC)
        created = [requests[i] for i in round_ if requests[i].new_run is not None]
        checked = _insert_new_runs(sql, created, now) if created else {}
        claims = [] if careful else [requests[i] for i in round_ if _claimable(requests[i])]
        if claims:
            claiming = {r.run_id for r in claims}
            also_lock = [
                requests[i]
                for i in round_
                if not sql.sqlite
                and requests[i].new_run is None
                and requests[i].run_id not in claiming
            ]
            checked |= _claim_group(sql, claims, also_lock, now)
        writes = _GroupWrites()
        for i in round_:
            request = requests[i]
            try:
                done[i] = _append(sql, request, writes, checked.get(request.run_id), now)
            except (ConcurrencyConflict, RunFinished, UnknownRun) as exc:
                done[i] = exc
        writes.flush(sql, artefact_max_bytes)
    return [done[i] for i in range(len(requests))]


def _rounds(requests: Sequence[AppendRequest]) -> list[list[int]]:
    """The requests' positions in rounds that hold each run at most once, a run's
    requests in their order."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, request in enumerate(requests):
        n = seen.get(request.run_id, 0)
        seen[request.run_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


def _write_timers(
    sql: DriverSQL,
    run_id: str,
    set_timers: Sequence[Timer],
    clear_timers: Collection[str],
) -> None:
    for timer in set_timers:
        if timer.run_id != run_id:
            raise ValueError(f"timer {timer.key!r} is for run {timer.run_id}, not {run_id}")
    moved = sorted(set(clear_timers) | {t.key for t in set_timers})
    if moved:
        sql.execute(_DELETE_SOME_TIMERS.format(keys=placeholders(len(moved))), [run_id, *moved])
    rows = [
        (run_id, t.key, t.kind.value, sql.timestamp(t.due_at), _json(t.data)) for t in set_timers
    ]
    sql.write(Insert(_INSERT_TIMERS, rows))


def _read(conn: Connection, run_id: str, after_seq: int, limit: int | None) -> list[Event]:
    query = _READ if limit is None else _READ.limit(limit)
    return [
        Event(
            row.run_id,
            row.seq,
            EventType(row.type),
            json.loads(row.data),
            row.at,
            row.idempotency_key,
        )
        for row in conn.execute(query, {"run": run_id, "after": after_seq})
    ]


def _runs(conn: Connection, query: Any) -> list[RunRecord]:
    return [_record(row) for row in conn.execute(query)]


def _timers(conn: Connection, where: ColumnElement[bool] | None, limit: int | None) -> list[Timer]:
    query = select(TIMERS).order_by(TIMERS.c.due_at, TIMERS.c.run_id, TIMERS.c["key"])
    if where is not None:
        query = query.where(where)
    if limit is not None:
        query = query.limit(limit)
    return [
        Timer(row.run_id, row.key, TimerKind(row.kind), row.due_at, json.loads(row.data))
        for row in conn.execute(query)
    ]


class EventStore:
    """Runs, their event logs and their timers (and, written with a decision's events, its
    step log lines and artefacts: bodies over `artefact_max_bytes` keep only a digest)."""

    def __init__(self, db: Database, artefact_max_bytes: int) -> None:
        self.db = db
        self.artefact_max_bytes = artefact_max_bytes

    async def create_run(
        self,
        run_id: str,
        *,
        workflow: str,
        version: str,
        project: str,
        input: Any,
        events: Sequence[NewEvent] = (),
        timers: Sequence[Timer] = (),
    ) -> Appended:
        """Record a new run, and its first events and timers in the same transaction."""
        row = new_run_row(run_id, workflow=workflow, version=version, project=project, input=input)
        return await self._one(AppendRequest(run_id, 0, events, timers, (), row))

    async def _one(self, request: AppendRequest) -> Appended:
        """One request in a transaction of its own."""
        r = request
        try:
            try:
                [outcome] = await self.db.hot_transaction(
                    _append_many, [r], self.artefact_max_bytes
                )
            except IntegrityError:  # a stored key (see `_append`): once more, carefully
                [outcome] = await self.db.hot_transaction(
                    _append_many, [r], self.artefact_max_bytes, True
                )
        except IntegrityError as exc:
            actual = await self.db.transaction(_last_seq, r.run_id)
            if r.new_run is not None:
                if actual is not None:
                    raise DuplicateRun(r.run_id) from exc
                raise
            # Another writer stored the same seq or idempotency key between our check and
            # our insert: the same situation as a stale expected_seq.
            raise ConcurrencyConflict(r.run_id, r.expected_seq, actual) from exc
        if isinstance(outcome, StorageError):
            raise outcome
        return outcome

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[Appended | Exception]:
        """Several runs' appends (and creations) in one transaction: one commit, where
        the round trips of a commit (and its flush to disk) cost more than the writes.

        Each is checked as `append` (or `create_run`) checks it; one that conflicts (a
        ConcurrencyConflict, RunFinished, UnknownRun, DuplicateRun, or the IntegrityError
        of a broken constraint) is returned in its place and the others are written.
        Runs are locked in id order, so two processes writing groups cannot deadlock.
        """
        if len(requests) == 1 and (alone := await self._alone(requests[0])) is not None:
            return [alone]
        ordered = sorted(range(len(requests)), key=lambda i: requests[i].run_id)
        try:
            done = await self.db.hot_transaction(
                _append_many, [requests[i] for i in ordered], self.artefact_max_bytes
            )
        except IntegrityError:
            # One of them broke a constraint (a duplicate run, another writer's race) and
            # the whole transaction rolled back: one transaction each, so only it fails.
            outcomes: list[Appended | Exception] = []
            for request in requests:
                try:
                    outcomes.append(await self._one(request))
                except (StorageError, IntegrityError) as exc:
                    outcomes.append(exc)
            return outcomes
        result: list[Appended | Exception] = [Appended(0, (), ())] * len(requests)
        for position, index in enumerate(ordered):
            result[index] = done[position]
        return result

    async def _alone(self, request: AppendRequest) -> Appended | None:
        """A lone append in one statement (`_in_one_statement`) when it can be; else None."""
        r = request
        if not _claimable(r) or r.set_timers or r.clear_timers or r.logs:
            return None
        try:
            return await self.db.single_statement(_in_one_statement, r, self.artefact_max_bytes)
        except IntegrityError:  # a key the run holds: the usual way drops it
            return None

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        *,
        set_timers: Sequence[Timer] = (),
        clear_timers: Collection[str] = (),
    ) -> Appended:
        """Append `events` after `expected_seq` (the last seq the caller has seen).

        Events whose idempotency key the run already holds (or that repeat a key earlier in
        the batch) are dropped; when every event of a non-empty batch is dropped the append
        is a no-op whatever `expected_seq` says, so a redelivered result is applied once.
        Otherwise a stale `expected_seq` raises ConcurrencyConflict and nothing is written;
        new events for a finished run raise RunFinished. A run-succeeded/failed/cancelled
        event also clears all the run's timers.
        """
        return await self._one(
            AppendRequest(run_id, expected_seq, events, set_timers, clear_timers)
        )

    async def read(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """The run's events after `after_seq`, in order (none for an unknown run)."""
        return await self.db.transaction(_read, run_id, after_seq, limit)

    async def run(self, run_id: str) -> RunRecord:
        found = await self.db.transaction(_runs, select(RUNS).where(RUNS.c.id == run_id))
        if not found:
            raise UnknownRun(run_id)
        return found[0]

    async def runs(
        self,
        *,
        status: RunStatus | Iterable[RunStatus] | None = None,
        workflow: str | None = None,
        project: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs newest first; pass the page's `next_cursor` back for the next page."""
        if limit < 1:
            raise ValueError("limit is at least 1")
        query = select(RUNS).order_by(RUNS.c.created_at.desc(), RUNS.c.id.desc())
        if status is not None:
            wanted = [status] if isinstance(status, RunStatus) else list(status)
            query = query.where(RUNS.c.status.in_([s.value for s in wanted]))
        if workflow is not None:
            query = query.where(RUNS.c.workflow == workflow)
        if project is not None:
            query = query.where(RUNS.c.project == project)
        if cursor is not None:
            created, run_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    RUNS.c.created_at < created,
                    and_(RUNS.c.created_at == created, RUNS.c.id < run_id),
                )
            )
        records = await self.db.transaction(_runs, query.limit(limit + 1))
        page = tuple(records[:limit])
        return RunPage(page, _encode_cursor(page[-1]) if len(records) > limit else None)

    async def unfinished_runs(self) -> list[RunRecord]:
        """Every run not yet succeeded, failed or cancelled, oldest first: what a
        restarted scheduler resumes."""
        query = (
            select(RUNS)
            .where(RUNS.c.status.in_([s.value for s in UNFINISHED]))
            .order_by(RUNS.c.created_at, RUNS.c.id)
        )
        return await self.db.transaction(_runs, query)

    async def timers(self, run_id: str) -> list[Timer]:
        return await self.db.transaction(_timers, TIMERS.c.run_id == run_id, None)

    async def due_timers(self, now: datetime, limit: int = 1000) -> list[Timer]:
        """Timers due at or before `now`, earliest first."""
        return await self.db.transaction(_timers, TIMERS.c.due_at <= now, limit)

    async def next_timer(self) -> Timer | None:
        """The earliest timer of any run (what the scheduler sleeps until)."""
        found = await self.db.transaction(_timers, None, 1)
        return found[0] if found else None
