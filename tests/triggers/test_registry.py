"""What the manager registers: the newest version of each workflow per project holding it
(unheld workflows count as "default"'s), firing triggers only; and the c0005 migration
going down and up again."""

from __future__ import annotations

import hashlib

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from flowforge.control.storage import CONTROL_SCHEMA, Storage
from flowforge.control.triggers import load_triggers

from .conftest import store_workflow

CRON = {"type": "cron", "schedule": "@hourly"}


async def test_each_project_fires_the_newest_version_it_holds(storage: Storage) -> None:
    old = await store_workflow(storage, "orders", [{"type": "webhook", "path": "/old"}])
    new = await store_workflow(storage, "orders", [{"type": "webhook", "path": "/new"}])
    await storage.projects.hold("shop", "orders", old.version, "test")
    await storage.projects.hold("shop", "orders", new.version, "test")
    await storage.projects.hold("archive", "orders", old.version, "test")
    await store_workflow(storage, "loose", [CRON, {"type": "nats", "subject": "loose.>"}])
    await store_workflow(storage, "by-hand", [{"type": "manual"}])
    bare = b'{"name":"bare","steps":{}}'
    await storage.versions.put("bare", hashlib.sha256(bare).hexdigest(), bare)

    found = await load_triggers(storage)
    shown = [(t.project, t.workflow, t.index, t.spec.type) for t in found]
    assert shown == [
        ("archive", "orders", 0, "webhook"),
        ("default", "loose", 0, "cron"),
        ("default", "loose", 1, "nats"),
        ("shop", "orders", 0, "webhook"),
    ]
    paths = {t.project: getattr(t.spec, "path", None) for t in found if t.workflow == "orders"}
    assert paths == {"archive": "/old", "shop": "/new"}
    shop = found[-1]
    held = await storage.projects.version("shop", new.version)
    assert held is not None and shop.version_created_at == held.submitted_at


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _migrate(conn: Connection, down_to: str | None) -> None:
    config = Config()
    config.set_main_option("script_location", str(CONTROL_SCHEMA.migrations))
    config.attributes["connection"] = conn
    if down_to is None:
        command.upgrade(config, "head")
    else:
        command.downgrade(config, down_to)


async def test_the_migration_goes_down_and_up(storage: Storage) -> None:
    ours = {"trigger_cron_ticks", "trigger_webhook_deliveries"}
    async with storage.db.engine.begin() as conn:
        assert ours <= await conn.run_sync(_tables)
        await conn.run_sync(_migrate, "c0004")
        assert not ours & await conn.run_sync(_tables)
        await conn.run_sync(_migrate, None)
        assert ours <= await conn.run_sync(_tables)
