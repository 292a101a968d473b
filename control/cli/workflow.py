"""`flowforge workflow ...`: workflow files and their immutable versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import click

from flowforge.control.scheduler import DevConnectors, PackageFolders
from flowforge.control.scheduler.catalog import version_from_canonical
from flowforge.control.scheduler.embedded import DEV_PACKAGES_DIR
from flowforge.control.storage import Storage, StorageError, StoredVersion
from flowforge.control.workflow import (
    Resolver,
    WorkflowInvalid,
    WorkspaceResolver,
    diff,
    load_spec,
    validate,
)
from flowforge.control.workflow.spec import REGENERATE, workflow_schema_text
from flowforge.control.workspace import trust_store_path, workspace_dir
from flowforge.marketplace.install import PACKAGES_DIR
from flowforge.runtime.trust import TrustStore

from .options import workspace_option
from .schemadoc import schema_command
from .workspace_db import with_storage

T = TypeVar("T")

_database = click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)


@click.group()
def workflow() -> None:
    """Submit, list, show and compare workflow versions."""


workflow.add_command(schema_command(workflow_schema_text, "a workflow file", REGENERATE))


def _progress(message: str) -> None:
    click.echo(message, err=True)


@workflow.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--connectors",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Development: resolve `uses` against local connector folders (built unsigned).",
)
@_database
@workspace_option
def submit(
    file: Path, connectors: Path | None, database: str | None, workspace: Path | None
) -> None:
    """Validate FILE and store it as an immutable version (the same content is the same
    version). Every problem is listed with its line and column.

    \b
    Exit codes: 0 stored (or already stored); 1 storage error; 2 invalid workflow.
    """
    root = workspace_dir(workspace)
    resolver: Resolver
    if connectors is not None:
        resolver = DevConnectors(connectors, root / DEV_PACKAGES_DIR, _progress)
    else:
        resolver = WorkspaceResolver(root, TrustStore(trust_store_path(root)))
    try:
        version = validate(load_spec(file), resolver)
    except WorkflowInvalid as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None

    async def job(storage: Storage) -> bool:
        _stored, new = await storage.versions.put(version.name, version.version, version.canonical)
        return new

    new = with_storage(workspace, database, job)
    state = "stored" if new else "already stored"
    click.echo(f"{version.name}@{version.short} {state} (version {version.version})")
    for step in version.steps.values():
        if step.connector is not None:
            pin = step.connector
            click.echo(f"  {step.id}: {pin.name}@{pin.version} sha256:{pin.digest[:12]}")


@workflow.command("list")
@_database
@workspace_option
def list_command(database: str | None, workspace: Path | None) -> None:
    """List the stored workflows: their latest version and how many versions each has."""

    async def job(storage: Storage) -> list[tuple[str, list[StoredVersion]]]:
        return [
            (name, await storage.versions.history(name)) for name in await storage.versions.names()
        ]

    found = with_storage(workspace, database, job)
    if not found:
        click.echo("(no workflows; flowforge workflow submit FILE)")
        return
    click.echo(f"{'WORKFLOW':<30} {'LATEST':<14} {'VERSIONS':>8}  SUBMITTED")
    for name, history in found:
        latest = history[-1]
        when = latest.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        click.echo(f"{name:<30} {latest.version[:12]:<14} {len(history):>8}  {when}")


async def _find(storage: Storage, name: str, prefix: str | None) -> StoredVersion:
    history = await storage.versions.history(name)
    if not history:
        raise StorageError(f"no workflow {name!r}")
    if prefix is None:
        return history[-1]
    matches = [v for v in history if v.version.startswith(prefix)]
    if len(matches) != 1:
        what = "no" if not matches else "more than one"
        raise StorageError(f"{what} version of {name} starts with {prefix!r}")
    return matches[0]


@workflow.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@_database
@workspace_option
def show(ref: str, database: str | None, workspace: Path | None) -> None:
    """Print a stored version (the latest, or the one whose hash starts with VERSION) as
    its canonical JSON: the normalised spec and each connector's pin."""
    name, _sep, prefix = ref.partition("@")

    async def job(storage: Storage) -> StoredVersion:
        return await _find(storage, name, prefix or None)

    found = with_storage(workspace, database, job)
    click.echo(f"# {found.name}@{found.version}")
    click.echo(json.dumps(json.loads(found.canonical), indent=2, ensure_ascii=False))


@workflow.command("diff")
@click.argument("name")
@click.argument("v1")
@click.argument("v2")
@_database
@workspace_option
def diff_command(name: str, v1: str, v2: str, database: str | None, workspace: Path | None) -> None:
    """What changed from version V1 to V2 of NAME (hash prefixes), one line per value."""
    root = workspace_dir(workspace)
    packages = PackageFolders([root / PACKAGES_DIR, root / DEV_PACKAGES_DIR])

    async def job(storage: Storage) -> list[str]:
        a = await _find(storage, name, v1)
        b = await _find(storage, name, v2)
        return diff(
            version_from_canonical(a.canonical, packages),
            version_from_canonical(b.canonical, packages),
        )

    lines = with_storage(workspace, database, job)
    for line in lines or ["(the same version)"]:
        click.echo(line)
