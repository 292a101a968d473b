"""`flowforge secret ...`: project secrets, encrypted at rest. A value is read from stdin
(or typed at a hidden prompt), never taken from the command line, where `ps` and shell
history would keep it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from flowforge.control.secrets import SecretBox, SecretError, SecretStore, load_master_key
from flowforge.control.storage import Database, database_url
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError

from .audit import record_local
from .options import fail, output_option, workspace_option

T = TypeVar("T")

_project = click.option(
    "--project", default="default", show_default=True, help="The project the secret belongs to."
)
_database = click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)


def _with_store(
    workspace: Path | None, database: str | None, job: Callable[[SecretStore], Awaitable[T]]
) -> T:
    async def go() -> T:
        box = SecretBox(load_master_key())
        db = await Database.open(database_url(workspace_dir(workspace), database))
        try:
            return await job(SecretStore(db, box))
        finally:
            await db.close()

    try:
        return asyncio.run(go())
    except (SecretError, DatabaseError) as exc:
        fail(str(exc), code=1)


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value: str = click.prompt(f"value of {name}", hide_input=True)
        return value
    value = sys.stdin.read()
    # One trailing newline is the shell's (`echo`), not part of the value.
    return value[:-1] if value.endswith("\n") else value


@click.group()
def secret() -> None:
    """Manage project secrets (encrypted at rest; granted to steps by name)."""


@secret.command("set")
@click.argument("name")
@_project
@_database
@workspace_option
def set_(name: str, project: str, database: str | None, workspace: Path | None) -> None:
    """Store the secret NAME; its value is read from stdin.

    \b
    Example:
      printf %s "$SLACK_TOKEN" | flowforge secret set SLACK_TOKEN --project ops
    """
    value = _read_value(name)
    if not value:
        fail(f"secret {name}: stdin held no value")
    created = _with_store(workspace, database, lambda store: store.set(project, name, value))
    details = {"project": project, "name": name, "created": created}  # AUD: names, never the value
    record_local(workspace, "secret.set", f"secret:{project}/{name}", details, database=database)
    click.echo(f"{'stored' if created else 'replaced'}: {project}/{name}")


@secret.command("list")
@_project
@output_option
@_database
@workspace_option
def list_(project: str, output: str, database: str | None, workspace: Path | None) -> None:
    """List the project's secret names (never their values).

    \b
    Example:
      flowforge secret list --project ops --output json
    """
    infos = _with_store(workspace, database, lambda store: store.list(project))
    if output == "json":
        rows = [
            {
                "name": i.name,
                "created_at": i.created_at.isoformat(),
                "updated_at": i.updated_at.isoformat(),
            }
            for i in infos
        ]
        click.echo(json.dumps({"project": project, "secrets": rows}))
        return
    if not infos:
        click.echo(f"no secrets in project {project}")
    for info in infos:
        click.echo(f"{info.name}  updated {info.updated_at.isoformat(timespec='seconds')}")


@secret.command("rm")
@click.argument("name")
@_project
@_database
@workspace_option
def rm(name: str, project: str, database: str | None, workspace: Path | None) -> None:
    """Delete the secret NAME.

    \b
    Example:
      flowforge secret rm SLACK_TOKEN --project ops
    """
    removed = _with_store(workspace, database, lambda store: store.remove(project, name))
    if not removed:
        fail(f"no secret {name!r} in project {project!r}", code=1)
    click.echo(f"removed: {project}/{name}")
