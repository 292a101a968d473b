"""The triggers' durable state: cron ticks claimed by compare-and-set, and signed webhook
deliveries remembered for the replay window."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from flowforge.control.storage.database import Database

from .tables import CRON_TICKS, WEBHOOK_DELIVERIES


@dataclass(frozen=True, order=True)
class CronKey:
    """One cron trigger: its workflow and its place in the version's trigger list."""

    project: str
    workflow: str
    index: int


@dataclass(frozen=True)
class CronTick:
    """The latest tick claimed for a cron trigger, and the run started for it."""

    key: CronKey
    schedule: str
    timezone: str
    last_tick: datetime
    run_id: str | None


def _where(key: CronKey) -> ColumnElement[bool]:
    return and_(
        CRON_TICKS.c.project == key.project,
        CRON_TICKS.c.workflow == key.workflow,
        CRON_TICKS.c.trigger_index == key.index,
    )


def _ticks(conn: Connection) -> dict[CronKey, CronTick]:
    found = {}
    for row in conn.execute(select(CRON_TICKS)):
        key = CronKey(row.project, row.workflow, row.trigger_index)
        found[key] = CronTick(key, row.schedule, row.timezone, row.last_tick, row.run_id)
    return found


def _insert_tick(conn: Connection, row: dict[str, object]) -> None:
    conn.execute(insert(CRON_TICKS), row)


def _claim(conn: Connection, key: CronKey, tick: datetime, schedule: str, zone: str) -> bool:
    query = (
        update(CRON_TICKS)
        .where(_where(key), CRON_TICKS.c.last_tick < tick)
        .values(
            last_tick=tick,
            run_id=None,
            schedule=schedule,
            timezone=zone,
            updated_at=datetime.now(UTC),
        )
    )
    return conn.execute(query).rowcount == 1


def _record_run(conn: Connection, key: CronKey, tick: datetime, run_id: str) -> None:
    query = (
        update(CRON_TICKS)
        .where(_where(key), CRON_TICKS.c.last_tick == tick)
        .values(run_id=run_id, updated_at=datetime.now(UTC))
    )
    conn.execute(query)


def _remember(conn: Connection, digest: str, at: datetime, forget_before: datetime) -> None:
    conn.execute(delete(WEBHOOK_DELIVERIES).where(WEBHOOK_DELIVERIES.c.seen_at < forget_before))
    conn.execute(insert(WEBHOOK_DELIVERIES), {"digest": digest, "seen_at": at})


class TriggerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ticks(self) -> dict[CronKey, CronTick]:
        """Every cron trigger's latest claimed tick."""
        return await self.db.transaction(_ticks)

    async def baseline(
        self, key: CronKey, schedule: str, timezone: str, since: datetime
    ) -> datetime:
        """The latest claimed tick of `key`; a trigger seen for the first time counts as
        having fired at `since` (when its version was stored), so it never fires for ticks
        from before it existed."""
        row = {
            "project": key.project,
            "workflow": key.workflow,
            "trigger_index": key.index,
            "schedule": schedule,
            "timezone": timezone,
            "last_tick": since,
            "run_id": None,
            "updated_at": datetime.now(UTC),
        }
        # Known already (or another manager inserted it first): its tick stands.
        with contextlib.suppress(IntegrityError):
            await self.db.transaction(_insert_tick, row)
        return (await self.ticks())[key].last_tick

    async def claim(self, key: CronKey, tick: datetime, schedule: str, timezone: str) -> bool:
        """Move the trigger's latest tick forward to `tick`; False when this tick (or a
        later one) was claimed already, by this manager before a restart or by another."""
        return await self.db.transaction(_claim, key, tick, schedule, timezone)

    async def record_run(self, key: CronKey, tick: datetime, run_id: str) -> None:
        await self.db.transaction(_record_run, key, tick, run_id)

    async def first_delivery(self, digest: str, at: datetime, forget_before: datetime) -> bool:
        """Remember a signed delivery; False when it was seen already (a replay).
        Deliveries older than `forget_before` are forgotten on the way."""
        try:
            await self.db.transaction(_remember, digest, at, forget_before)
        except IntegrityError:
            return False
        return True


__all__ = ["CronKey", "CronTick", "TriggerStore"]
