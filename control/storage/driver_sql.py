"""The hot path's statements, as SQL text run on the driver's own cursor.

Running a SQLAlchemy Core statement costs tens of microseconds of Python beyond what the
database spends on it (SQLite spends 10-20 us on each of an append's statements), and an
append with its artefacts runs five or six. So the writes of an append (run, events,
timers, log lines, artefacts) are written once as SQL text with `?` placeholders and run
on the DB-API cursor of the SQLAlchemy connection, inside its transaction: SQLAlchemy still
owns the connection, its pool, BEGIN and COMMIT. bench/storage.py prints the append's cost.

On SQLite a statement that writes must begin with INSERT, UPDATE, DELETE or REPLACE: in
its default mode Python's sqlite3 opens the transaction only before one of those, so a
write beginning with WITH, as the first of a transaction, would be committed on its own
and outlive a rollback. (PostgreSQL's transaction is opened with BEGIN.)

Values are bound as the tables' SQLAlchemy types bind them, so every other reader sees the
same rows: timestamps in UTC, and on SQLite in SQLAlchemy's text format. A driver error is
raised as SQLAlchemy's (`IntegrityError` ...), as `Connection.execute` raises it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

# SQLAlchemy's SQLite DATETIME storage format (what its DateTime type writes and parses).
_SQLITE_TIMESTAMP: Final = "%Y-%m-%d %H:%M:%S.%f"
_PLACEHOLDER: Final = re.compile(r"\?")
_DOLLARS: dict[str, str] = {}  # `?` text -> `$1, $2 ...` text, translated once each
# Bound values per statement: under SQLite's oldest limit (999) and PostgreSQL's (32767).
_MAX_PARAMS_SQLITE: Final = 990
_MAX_PARAMS_POSTGRESQL: Final = 30000


def placeholders(count: int) -> str:
    """`?, ?, ?` for an IN list of `count` values (at least one)."""
    if count < 1:
        raise ValueError("an IN list needs at least one value")
    return ", ".join("?" * count)


def _dollar(sql: str) -> str:
    translated = _DOLLARS.get(sql)
    if translated is None:
        numbers = itertools.count(1)
        translated = _PLACEHOLDER.sub(lambda _m: f"${next(numbers)}", sql)
        _DOLLARS[sql] = translated
    return translated


class DriverSQL:
    """The DB-API cursor of one SQLAlchemy connection (SQLite's pysqlite, or asyncpg
    through SQLAlchemy's adapter), taking SQL with `?` placeholders."""

    def __init__(self, conn: Connection) -> None:
        dialect = conn.dialect
        if dialect.paramstyle not in ("qmark", "numeric_dollar"):
            raise ValueError(
                f"no driver SQL for the {dialect.name} paramstyle {dialect.paramstyle}"
            )
        self._sqlite = dialect.name == "sqlite"
        self._dollar = dialect.paramstyle == "numeric_dollar"
        self._errors: type[Exception] = dialect.loaded_dbapi.Error
        self._conn = conn
        self._cursor = conn.connection.cursor()

    @property
    def sqlite(self) -> bool:
        """SQLite (else PostgreSQL): for the statements the two spell differently."""
        return self._sqlite

    def timestamp(self, value: datetime) -> datetime | str:
        """`value` (zone-aware) as a timestamp column binds it."""
        if value.tzinfo is None:
            raise ValueError("naive datetime: storage takes zone-aware timestamps")
        utc = value.astimezone(UTC)
        return utc.strftime(_SQLITE_TIMESTAMP) if self._sqlite else utc

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows a query returns."""
        self.execute(sql, params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement; how many rows it changed. (A statement with RETURNING goes
        through `rows`: SQLite carries it out as its rows are read.)"""
        text = _dollar(sql) if self._dollar else sql
        try:
            self._cursor.execute(text, tuple(params))
        except self._errors as exc:
            raise self._error(text, params, exc) from exc
        return int(self._cursor.rowcount)

    def _error(self, text: str, params: Sequence[Any], exc: Exception) -> Exception:
        """SQLAlchemy's error for `exc`; a lost connection is invalidated, as SQLAlchemy
        does it, so that it is never used again and the error says so."""
        dbapi_connection = self._conn.connection.dbapi_connection
        lost = self._conn.dialect.is_disconnect(cast(Any, exc), dbapi_connection, None)
        if lost:
            self._conn.invalidate(exc)
        return DBAPIError.instance(text, params, exc, self._errors, connection_invalidated=lost)

    def write(self, *inserts: Insert) -> None:
        """Every row of every insert, as `head VALUES (?, ...), (?, ...) tail` statements
        (a DB-API `executemany` steps SQLite once per row, and every step lets go of the
        GIL: with sandbox threads waiting for it, each cost the event loop a wait). On
        PostgreSQL they go in one statement (all but the last as `WITH` clauses, which
        PostgreSQL runs, constraint checks included, as one): one round trip, not one each.
        Nothing may read what another of them writes."""
        limit = _MAX_PARAMS_SQLITE if self._sqlite else _MAX_PARAMS_POSTGRESQL
        pending: list[tuple[str, list[Any]]] = []
        values = 0
        for statement, params in _statements(inserts, limit):
            if pending and (self._sqlite or values + len(params) > limit):
                self._execute_together(pending)
                pending, values = [], 0
            pending.append((statement, params))
            values += len(params)
        if pending:
            self._execute_together(pending)

    def values(self, rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
        """`VALUES (?, ...), ...` for `rows`, and its parameters, for a statement that
        reads rows from a list (its columns are `column1`, `column2` ... on both). PostgreSQL
        gives a list's parameters no type of their own, so there each is cast to its
        column's PostgreSQL type (`types`)."""
        if self._sqlite:
            one = "(" + ", ".join("?" * len(types)) + ")"
        else:
            one = "(" + ", ".join(f"?::{t}" for t in types) + ")"
        return "VALUES " + ", ".join([one] * len(rows)), [v for row in rows for v in row]

    def write_if_claimed(
        self, claim: Statement, inserts: Sequence[Insert], deletes: Sequence[Statement] = ()
    ) -> bool | None:
        """PostgreSQL: `claim` (an UPDATE ... RETURNING), the deletes (each with a WHERE
        clause) and the inserts in one statement, the deletes and inserts only if the claim
        returned a row; whether it did. None when this is SQLite or the values are too many
        for one statement: the caller writes the usual way."""
        if self._sqlite:
            return None
        clauses = [f"c AS ({claim.text})"]
        params = list(claim.params)
        for n, delete in enumerate(deletes):
            clauses.append(f"d{n} AS ({delete.text} AND EXISTS (SELECT 1 FROM c))")
            params += delete.params
        for n, insert in enumerate(i for i in inserts if i.rows):
            values, values_params = self.values(insert.rows, insert.types)
            clauses.append(
                f"w{n} AS ({insert.head} SELECT * FROM ({values}) AS v "
                f"WHERE EXISTS (SELECT 1 FROM c){insert.tail})"
            )
            params += values_params
        if len(params) > _MAX_PARAMS_POSTGRESQL:
            return None
        found = self.rows(f"WITH {', '.join(clauses)} SELECT count(*) FROM c", params)
        return bool(found[0][0])

    def _execute_together(self, statements: Sequence[tuple[str, list[Any]]]) -> None:
        *first, (last, last_params) = statements
        if not first:
            self.execute(last, last_params)
            return
        clauses = ", ".join(f"i{n} AS ({text})" for n, (text, _) in enumerate(first))
        params = [v for _, p in first for v in p]
        self.execute(f"WITH {clauses} {last}", [*params, *last_params])


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement with its values (for `DriverSQL.write_if_claimed`)."""

    text: str
    params: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Insert:
    """Rows for `DriverSQL.write`: `head` names the table and columns, `tail` may add an
    ON CONFLICT clause; `types` are the columns' PostgreSQL types, for `write_if_claimed`
    (which selects the rows from a VALUES list, where PostgreSQL cannot infer them)."""

    head: str
    rows: Sequence[Sequence[Any]]
    tail: str = ""
    types: tuple[str, ...] = ()


def _statements(inserts: Sequence[Insert], limit: int) -> Iterator[tuple[str, list[Any]]]:
    """Each insert's rows as statements of at most `limit` values."""
    for insert in inserts:
        if not insert.rows:
            continue
        width = len(insert.rows[0])
        one = "(" + ", ".join("?" * width) + ")"
        per_statement = max(1, limit // width)
        for start in range(0, len(insert.rows), per_statement):
            chunk = insert.rows[start : start + per_statement]
            values = ", ".join([one] * len(chunk))
            yield f"{insert.head} VALUES {values}{insert.tail}", [v for row in chunk for v in row]


__all__ = ["DriverSQL", "Insert", "Statement", "placeholders"]
