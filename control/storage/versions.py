"""Immutable workflow versions, addressed by the sha256 of their canonical bytes: storing
the same content twice is the same version."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .database import Database
from .errors import UnknownVersion, VersionMismatch
from .models import VERSIONS
from .records import StoredVersion


def _insert(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(VERSIONS), row)


def _select(conn: Connection, query: Any) -> list[StoredVersion]:
    return [
        StoredVersion(row.name, row.version, bytes(row.canonical), row.created_at)
        for row in conn.execute(query)
    ]


def _names(conn: Connection) -> list[str]:
    query = select(VERSIONS.c.name).distinct().order_by(VERSIONS.c.name)
    return [name for (name,) in conn.execute(query)]


class VersionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, name: str, version: str, canonical: bytes) -> tuple[StoredVersion, bool]:
        """Store a version; returns it and whether it is new. `version` must be the sha256
        hex of `canonical`; an existing version is returned as it was first stored."""
        digest = hashlib.sha256(canonical).hexdigest()
        if digest != version:
            raise VersionMismatch(
                f"workflow {name}: version {version} is not the sha256 of its canonical form "
                f"({digest})"
            )
        row = {"version": version, "name": name, "canonical": canonical}
        try:
            await self.db.transaction(_insert, {**row, "created_at": datetime.now(UTC)})
        except IntegrityError:
            return await self.get(version), False
        return await self.get(version), True

    async def get(self, version: str) -> StoredVersion:
        query = select(VERSIONS).where(VERSIONS.c.version == version)
        found = await self.db.transaction(_select, query)
        if not found:
            raise UnknownVersion(version)
        return found[0]

    async def history(self, name: str) -> list[StoredVersion]:
        """Every version of the workflow `name`, oldest first."""
        query = (
            select(VERSIONS)
            .where(VERSIONS.c.name == name)
            .order_by(VERSIONS.c.created_at, VERSIONS.c.version)
        )
        return await self.db.transaction(_select, query)

    async def latest(self, name: str) -> StoredVersion | None:
        found = await self.history(name)
        return found[-1] if found else None

    async def names(self) -> list[str]:
        """The names of all stored workflows, sorted."""
        return await self.db.transaction(_names)
