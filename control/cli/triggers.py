"""`flowforge triggers list`: the cron, webhook and NATS triggers registered, and when
each cron trigger fires next."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from flowforge.control.storage import Storage
from flowforge.control.triggers import (
    CronKey,
    CronSchedule,
    CronTick,
    RegisteredTrigger,
    TriggerStore,
    load_triggers,
)
from flowforge.control.workflow.spec import CronTrigger, NatsTrigger, WebhookTrigger

from .options import workspace_option
from .output import Table, emit, rendered_output_option
from .workspace_db import with_storage


def _entry(
    trigger: RegisteredTrigger, ticks: dict[CronKey, CronTick], now: datetime
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "project": trigger.project,
        "workflow": trigger.workflow,
        "version": trigger.version,
        "index": trigger.index,
        "type": trigger.spec.type,
    }
    spec = trigger.spec
    if isinstance(spec, CronTrigger):
        tick = ticks.get(trigger.cron_key)
        entry |= {
            "schedule": spec.schedule,
            "timezone": spec.timezone,
            "next": CronSchedule.of(spec).next_after(now).isoformat(),
            "last_tick": tick.last_tick.isoformat() if tick is not None else None,
            "last_run_id": tick.run_id if tick is not None else None,
        }
    elif isinstance(spec, WebhookTrigger):
        entry |= {"path": spec.path, "secret": spec.secret}
    elif isinstance(spec, NatsTrigger):
        entry["subject"] = spec.subject
    return entry


def _what(entry: dict[str, Any]) -> str:
    if entry["type"] == "cron":
        return f"{entry['schedule']} ({entry['timezone']})"
    if entry["type"] == "webhook":
        signed = f" (signed with secret {entry['secret']})" if entry["secret"] else ""
        return f"POST {entry['path']}{signed}"
    return str(entry["subject"])


def _table(entries: list[dict[str, Any]]) -> Table:
    rows = [
        (
            f"{e['project']}/{e['workflow']}",
            e["type"],
            e.get("next", ""),
            e.get("last_run_id") or "",
            _what(e),
        )
        for e in entries
    ]
    return Table(
        ("WORKFLOW", "TYPE", "NEXT (UTC)", "LAST RUN", "TRIGGER"),
        rows,
        "(no cron, webhook or NATS triggers in the submitted workflows)",
    )


@click.group()
def triggers() -> None:
    """Inspect the triggers that start runs (cron, webhook, NATS subject).

    `flowforge server` fires them; see docs/architecture.md, "Triggers".
    """


@triggers.command("list")
@click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)
@rendered_output_option
@workspace_option
def list_triggers(database: str | None, output: str, workspace: Path | None) -> None:
    """List the triggers of the newest version of each submitted workflow, and when each
    cron trigger fires next.

    \b
    Example:
      flowforge triggers list --output json
    """

    async def job(storage: Storage) -> list[dict[str, Any]]:
        found = await load_triggers(storage)
        ticks = await TriggerStore(storage.db).ticks()
        now = datetime.now(UTC)
        return [_entry(t, ticks, now) for t in found]

    entries = with_storage(workspace, database, job)
    emit(output, {"triggers": entries}, lambda: _table(entries))


__all__ = ["triggers"]
