"""`flowforge token ...`: API tokens, made and revoked straight in the workspace's
database (this is how the first admin gets a token)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click

from flowforge.control.storage import Storage
from flowforge.control.storage.tokens import ROLE_NAMES, TokenRecord

from .options import output_option, workspace_option
from .workspace_db import with_storage

_database = click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)


def _actor() -> str:
    return f"local:{getpass.getuser()}"


def _when(at: Any) -> str:
    return "-" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M")


def _doc(record: TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "project": record.project,
        "role": record.role,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
    }


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (bearer tokens for `flowforge server`).

    \b
    Roles, each including the ones before it:
      viewer     read workflows, runs, events and logs; search the marketplace
      operator   start, cancel, approve, reject and retry runs
      publisher  submit workflows; publish connectors
      admin      everything in the project
    """


@token.command()
@click.option("--project", required=True, help="The project the token acts in.")
@click.option("--role", required=True, type=click.Choice(ROLE_NAMES), help="Its role there.")
@click.option("--name", default="", help="A label for listings (default: ROLE@PROJECT).")
@output_option
@_database
@workspace_option
def create(
    project: str,
    role: str,
    name: str,
    output: str,
    database: str | None,
    workspace: Path | None,
) -> None:
    """Make a token and print it once: only its hash is kept, so store it now.

    \b
    Example:
      flowforge token create --project acme --role operator --name ci
      export FLOWFORGE_TOKEN=ffp_...   # then: grpcurl -H "authorization: Bearer $FLOWFORGE_TOKEN"
    """

    async def job(storage: Storage) -> tuple[TokenRecord, str]:
        record, text = await storage.tokens.create(project=project, role=role, name=name)
        details = {"project": project, "role": role, "name": record.name}
        await storage.audit.append(_actor(), "token.create", f"token:{record.id}", details)
        return record, text

    record, text = with_storage(workspace, database, job)
    if output == "json":
        click.echo(json.dumps({**_doc(record), "token": text}))
        return
    click.echo(f"token {record.id} ({record.name}): {record.role} in project {record.project}")
    click.echo(text)
    click.echo("(shown once: only its hash is stored)", err=True)


@token.command("list")
@click.option("--project", default=None, help="Only the tokens of this project.")
@output_option
@_database
@workspace_option
def list_command(
    project: str | None, output: str, database: str | None, workspace: Path | None
) -> None:
    """List tokens (never their secrets), oldest first.

    \b
    Example:
      flowforge token list --project acme --output json
    """

    async def job(storage: Storage) -> list[TokenRecord]:
        return await storage.tokens.list(project)

    records = with_storage(workspace, database, job)
    if output == "json":
        click.echo(json.dumps({"tokens": [_doc(r) for r in records]}))
        return
    if not records:
        click.echo("(no tokens; flowforge token create --project P --role R)")
        return
    click.echo(f"{'ID':<14} {'NAME':<20} {'PROJECT':<16} {'ROLE':<10} {'CREATED':<17} STATE")
    for r in records:
        state = f"revoked {_when(r.revoked_at)}" if r.revoked else f"used {_when(r.last_used_at)}"
        click.echo(
            f"{r.id:<14} {r.name[:20]:<20} {r.project[:16]:<16} {r.role:<10} "
            f"{_when(r.created_at):<17} {state}"
        )


@token.command()
@click.argument("token_id", metavar="ID")
@output_option
@_database
@workspace_option
def revoke(token_id: str, output: str, database: str | None, workspace: Path | None) -> None:
    """Revoke token ID for good: the next call made with it is refused.

    \b
    Example:
      flowforge token revoke 3f9c0a1b2c4d
    """

    async def job(storage: Storage) -> TokenRecord:
        record = await storage.tokens.revoke(token_id)
        await storage.audit.append(
            _actor(), "token.revoke", f"token:{record.id}", {"project": record.project}
        )
        return record

    record = with_storage(workspace, database, job)
    if output == "json":
        click.echo(json.dumps(_doc(record)))
        return
    click.echo(f"token {record.id} ({record.name}) revoked")
