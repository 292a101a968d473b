"""`flowforge status`: the workspace's runs and the circuit breakers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from flowforge.control.scheduler.embedded import read_breakers
from flowforge.control.storage import RunRecord, Storage, StorageError, database_url
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError

from .options import fail, output_option, workspace_option


def _when(record: RunRecord) -> str:
    return record.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)
@output_option
@workspace_option
def status(limit: int, database: str | None, output: str, workspace: Path | None) -> None:
    """Show the latest runs and the circuit breakers (per connector and target host).

    The breakers are as the last scheduler of this workspace left them.
    """
    root = workspace_dir(workspace)

    async def go() -> list[RunRecord]:
        storage = await Storage.open(database_url(root, database))
        try:
            return list((await storage.events.runs(limit=limit)).runs)
        finally:
            await storage.close()

    try:
        runs = asyncio.run(go())
    except (StorageError, DatabaseError) as exc:
        fail(str(exc), code=1)
    breakers = read_breakers(root)
    if output == "json":
        doc: dict[str, Any] = {
            "runs": [
                {
                    "id": r.id,
                    "workflow": r.workflow,
                    "version": r.version,
                    "status": r.status.value,
                    "waiting_approval": list(r.waiting_approval),
                    "created_at": r.created_at.isoformat(),
                }
                for r in runs
            ],
            "breakers": breakers,
        }
        click.echo(json.dumps(doc))
        return
    click.echo(f"{'RUN':<26} {'WORKFLOW':<24} {'STATUS':<17} STARTED")
    for r in runs:
        waiting = f" ({', '.join(r.waiting_approval)})" if r.waiting_approval else ""
        click.echo(f"{r.id:<26} {r.workflow:<24} {r.status.value + waiting:<17} {_when(r)}")
    if not runs:
        click.echo("(no runs)")
    click.echo("")
    click.echo(f"{'BREAKER':<40} {'STATE':<10} FAILURES")
    for b in breakers:
        name = f"{b.get('connector')} @ {b.get('host')}"
        click.echo(f"{name:<40} {b.get('state', '?'):<10} {b.get('failures', 0)}")
    if not breakers:
        click.echo("(all closed)")
