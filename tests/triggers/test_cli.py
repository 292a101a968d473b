"""`flowforge triggers list`: what is registered, per project, and when cron fires next."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flowforge.control.storage import Storage, database_url
from flowforge.control.triggers import CronKey, CronSchedule, TriggerStore
from tests.cli import run_cli

from .conftest import store_workflow

CRON = {"type": "cron", "schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"}
HOOK = {"type": "webhook", "path": "/hooks/orders", "secret": "hook_key"}


async def test_triggers_list_shows_each_trigger_and_the_next_cron_tick(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    async with await Storage.open(database_url(workspace, None)) as storage:
        nightly = await store_workflow(storage, "nightly", [CRON, {"type": "manual"}])
        orders = await store_workflow(
            storage, "orders", [HOOK, {"type": "nats", "subject": "orders.*"}]
        )
        # Held by a project (as the API's submit records it): no longer "default"'s.
        await storage.projects.hold("shop", "orders", orders.version, "test")
        store = TriggerStore(storage.db)
        key = CronKey("default", "nightly", 0)
        await store.baseline(key, CRON["schedule"], CRON["timezone"], nightly.created_at)
    before = datetime.now(UTC)
    listed = run_cli("triggers", "list", "--output", "json", "--workspace", str(workspace))
    assert listed.code == 0, listed.stderr
    entries = listed.json["triggers"]
    assert [(e["project"], e["workflow"], e["type"]) for e in entries] == [
        ("default", "nightly", "cron"),
        ("shop", "orders", "webhook"),
        ("shop", "orders", "nats"),
    ]
    cron = entries[0]
    assert cron["version"] == nightly.version
    assert cron["last_tick"] == nightly.created_at.isoformat()
    assert cron["last_run_id"] is None
    next_tick = datetime.fromisoformat(cron["next"])
    assert next_tick == CronSchedule(CRON["schedule"], CRON["timezone"]).next_after(before)
    assert entries[1]["path"] == "/hooks/orders" and entries[1]["secret"] == "hook_key"
    assert entries[2]["subject"] == "orders.*"

    table = run_cli("triggers", "list", "--workspace", str(workspace))
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["WORKFLOW", "TYPE", "NEXT", "(UTC)", "LAST", "RUN", "TRIGGER"]
    assert "0 9 * * 1-5 (Europe/Paris)" in lines[1]
    assert "POST /hooks/orders (signed with secret hook_key)" in lines[2]


def test_triggers_list_says_when_there_are_none(tmp_path: Path) -> None:
    listed = run_cli("triggers", "list", "--workspace", str(tmp_path / "empty"))
    assert listed.code == 0, listed.stderr
    assert "(no cron, webhook or NATS triggers" in listed.stdout
    as_json = run_cli("triggers", "list", "--output", "json", "--workspace", str(tmp_path / "e"))
    assert as_json.json == {"triggers": []}
