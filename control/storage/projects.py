"""Which project holds which workflow version, and which run retries which.

Versions stay content-addressed and shared (`workflow_versions`); a project holds a
version once it has been submitted to it. The API shows a project only what it holds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ForeignKey, Index, String, func, insert, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .database import Database
from .models import Base, UTCDateTime, _table


class ProjectWorkflowRow(Base):
    __tablename__ = "project_workflows"
    __table_args__ = (Index("ix_project_workflows_name", "project", "name", "submitted_at"),)

    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(ForeignKey("workflow_versions.version"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str] = mapped_column(String(255))


class RunRetryRow(Base):
    __tablename__ = "run_retries"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    retry_of: Mapped[str] = mapped_column(ForeignKey("runs.id"))


PROJECT_WORKFLOWS: Final = _table(ProjectWorkflowRow)
RUN_RETRIES: Final = _table(RunRetryRow)


@dataclass(frozen=True, slots=True)
class ProjectVersion:
    """A version as a project holds it: when it was submitted there and by whom."""

    project: str
    name: str
    version: str
    submitted_at: datetime
    submitted_by: str


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    """The newest version of each workflow of a page, and the cursor of the next one."""

    latest: tuple[ProjectVersion, ...]
    next_cursor: str | None


def _version(row: Row[Any]) -> ProjectVersion:
    return ProjectVersion(row.project, row.name, row.version, row.submitted_at, row.submitted_by)


def _rows(conn: Connection, query: Any) -> list[Row[Any]]:
    return list(conn.execute(query))


def _insert(conn: Connection, table: Any, row: dict[str, Any]) -> None:
    conn.execute(insert(table), row)


def _encode(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(["wf", name]).encode("utf-8")).decode("ascii")


def _decode(cursor: str) -> str:
    try:
        tag, name = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a workflow listing cursor: {cursor!r}") from exc
    if tag != "wf" or not isinstance(name, str):
        raise ValueError(f"not a workflow listing cursor: {cursor!r}")
    return name


class ProjectStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def hold(
        self, project: str, name: str, version: str, by: str
    ) -> tuple[ProjectVersion, bool]:
        """Record that `project` holds `version` (already stored); whether it is new there."""
        row = {
            "project": project,
            "name": name,
            "version": version,
            "submitted_at": datetime.now(UTC),
            "submitted_by": by,
        }
        try:
            await self.db.transaction(_insert, PROJECT_WORKFLOWS, row)
            created = True
        except IntegrityError:
            created = False
        found = await self.version(project, version)
        assert found is not None  # just written, or written before
        return found, created

    async def version(self, project: str, version: str) -> ProjectVersion | None:
        query = select(PROJECT_WORKFLOWS).where(
            PROJECT_WORKFLOWS.c.project == project, PROJECT_WORKFLOWS.c.version == version
        )
        rows = await self.db.transaction(_rows, query)
        return _version(rows[0]) if rows else None

    async def history(self, project: str, name: str) -> list[ProjectVersion]:
        """The versions of `name` the project holds, newest first."""
        query = (
            select(PROJECT_WORKFLOWS)
            .where(PROJECT_WORKFLOWS.c.project == project, PROJECT_WORKFLOWS.c.name == name)
            .order_by(PROJECT_WORKFLOWS.c.submitted_at.desc(), PROJECT_WORKFLOWS.c.version.desc())
        )
        return [_version(row) for row in await self.db.transaction(_rows, query)]

    async def workflows(
        self, project: str, *, limit: int = 50, cursor: str | None = None
    ) -> WorkflowPage:
        """The project's workflows by name, each as its newest version."""
        if limit < 1:
            raise ValueError("limit is at least 1")
        table = PROJECT_WORKFLOWS
        names = (
            select(table.c.name)
            .where(table.c.project == project)
            .group_by(table.c.name)
            .order_by(table.c.name)
        )
        if cursor is not None:
            names = names.where(table.c.name > _decode(cursor))
        picked = [row.name for row in await self.db.transaction(_rows, names.limit(limit + 1))]
        page = picked[:limit]
        latest: list[ProjectVersion] = []
        if page:
            newest = (
                select(table.c.name, func.max(table.c.submitted_at).label("at"))
                .where(table.c.project == project, table.c.name.in_(page))
                .group_by(table.c.name)
                .subquery()
            )
            same = (table.c.name == newest.c.name) & (table.c.submitted_at == newest.c.at)
            query = (
                select(table)
                .join(newest, same)
                .where(table.c.project == project)
                .order_by(table.c.name, table.c.version)
            )
            seen: set[str] = set()
            for row in await self.db.transaction(_rows, query):
                if row.name not in seen:  # two versions submitted in the same instant
                    seen.add(row.name)
                    latest.append(_version(row))
        return WorkflowPage(tuple(latest), _encode(page[-1]) if len(picked) > limit else None)

    async def record_retry(self, run_id: str, retry_of: str) -> None:
        await self.db.transaction(_insert, RUN_RETRIES, {"run_id": run_id, "retry_of": retry_of})

    async def retries_of(self, run_ids: Iterable[str]) -> dict[str, str]:
        """run id -> the run it retries, for those of `run_ids` that are retries."""
        wanted = list(run_ids)
        if not wanted:
            return {}
        query = select(RUN_RETRIES).where(RUN_RETRIES.c.run_id.in_(wanted))
        return {row.run_id: row.retry_of for row in await self.db.transaction(_rows, query)}


__all__ = [
    "PROJECT_WORKFLOWS",
    "RUN_RETRIES",
    "ProjectStore",
    "ProjectVersion",
    "WorkflowPage",
]
