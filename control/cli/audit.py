"""`flowforge audit ...`: check, export and read the workspace's hash-chained audit log,
and `record_local`, which the local commands (trust, secret) use to write to it.

These commands read the workspace database directly (like `flowforge token`), not the API.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import click

from flowforge.control.storage import Database, Storage, StorageError, database_url
from flowforge.control.storage.audit import AuditLog, AuditRecord, VerifyReport, local_actor
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError
from flowforge.runtime.files import atomic_writer

from .options import fail, workspace_option
from .output import Table, emit, fail_as, rendered_output_option
from .workspace_db import with_storage

EXIT_INTACT: Final = 0
EXIT_TAMPERED: Final = 1

database_option = click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)


def record_local(
    workspace: Path | None,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    *,
    database: str | None = None,
) -> None:
    """Append one entry for a command run here, as `local:<user>`; a failure ends the
    command (exit 1) saying that the change itself was made but not recorded."""

    async def go() -> None:
        db = await Database.open(database_url(workspace_dir(workspace), database))
        try:
            await AuditLog(db).append(local_actor(), action, target, details)
        finally:
            await db.close()

    try:
        asyncio.run(go())
    except (StorageError, DatabaseError, OSError) as exc:
        fail(
            f"the change was made, but it could not be recorded in the audit log ({action} "
            f"{target}): {exc}. Check the workspace database (--workspace, $FLOWFORGE_DATABASE)",
            code=1,
        )


@click.group()
def audit() -> None:
    """The audit log: who did what and when, hash-chained so edits show.

    Every security-relevant action (workflow submit, run start/cancel/approve/reject/retry,
    secret set and reads by steps, token create/revoke, trust changes, marketplace publish,
    yank and install) is appended with its actor, target and time. These commands read the
    workspace database directly (--database or $FLOWFORGE_DATABASE for a shared one).

    \b
    Examples:
      flowforge audit verify --anchor "$(cat audit-anchor.txt)"
      flowforge audit export --since 1200 --out audit.jsonl
    """


def _verify_lines(report: VerifyReport) -> list[str]:
    if report.problem is None:
        lines = [f"intact: {report.rows} entries, last seq {report.last_seq}"]
        lines.append(f"last hash (keep it as the anchor): {report.last_hash}")
        return lines + [f"note: {note}" for note in report.notes]
    p = report.problem
    return [
        f"TAMPERED at row {p.seq} ({p.kind}): {p.message}",
        f"{report.rows} entries before it check out (up to seq {report.last_seq}).",
    ]


@audit.command("verify")
@click.option(
    "--anchor",
    default=None,
    metavar="HASH",
    help="A hash kept from an earlier export or verify: the log must still hold that entry "
    "(catches a removed tail, which the chain alone cannot show).",
)
@rendered_output_option
@database_option
@workspace_option
def verify(anchor: str | None, output: str, database: str | None, workspace: Path | None) -> None:
    """Check the whole hash chain; exit 0 when intact, 1 when a row was edited, removed or
    reordered (the message names the first bad row).

    \b
    Examples:
      flowforge audit verify
      flowforge audit verify --anchor 9f2c...41 --output json
    """
    if anchor is not None and (len(anchor.strip()) != 64 or not _is_hex(anchor.strip())):
        fail_as(output, f"--anchor {anchor!r}: expected a sha256 hash (64 hex digits)")

    async def job(storage: Storage) -> VerifyReport:
        return await storage.audit.verify(anchor=anchor)

    report = with_storage(workspace, database, job)
    emit(output, report.to_json(), _verify_lines(report))
    sys.exit(EXIT_INTACT if report.intact else EXIT_TAMPERED)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


@audit.command("export")
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="SEQ",
    help="Only entries after this seq (the last one a previous export wrote).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to this file (atomically) instead of stdout.",
)
@database_option
@workspace_option
def export(since: int, out: Path | None, database: str | None, workspace: Path | None) -> None:
    """Write the entries as JSON lines for a SIEM, oldest first.

    Each line holds seq, at, actor, action, target, details, prev_hash and hash; the last
    line's hash is the anchor to keep elsewhere (`audit verify --anchor`). A line's hash is
    the sha256 of the canonical JSON (sorted keys, no spaces) of the line without `hash`.

    \b
    Examples:
      flowforge audit export > audit.jsonl
      flowforge audit export --since "$(tail -1 audit.jsonl | jq .seq)" >> audit.jsonl
    """

    def run(write: Callable[[str], object]) -> tuple[int, str | None]:
        async def job(storage: Storage) -> tuple[int, str | None]:
            count, last = 0, None
            async for record in storage.audit.export(since=since):
                write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                count, last = count + 1, record.hash
            return count, last

        return with_storage(workspace, database, job)

    if out is None:
        run(sys.stdout.write)
        sys.stdout.flush()
        return
    try:
        with atomic_writer(out) as handle:
            count, last = run(lambda line: handle.write(line.encode("utf-8")))
    except OSError as exc:
        fail(f"--out {out}: {exc}", code=1)
    anchor = f"; last hash (the anchor) {last}" if last else ""
    click.echo(f"wrote {count} entries to {out}{anchor}", err=True)


@audit.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--action", default=None, help="Only this action, e.g. secret.read.")
@click.option("--actor", default=None, help="Only this actor, e.g. local:ada.")
@rendered_output_option
@database_option
@workspace_option
def list_(
    limit: int,
    action: str | None,
    actor: str | None,
    output: str,
    database: str | None,
    workspace: Path | None,
) -> None:
    """The newest entries first.

    \b
    Examples:
      flowforge audit list --limit 20
      flowforge audit list --action trust.add --output json
    """

    async def job(storage: Storage) -> list[AuditRecord]:
        return await storage.audit.list(limit=limit, action=action, actor=actor)

    records = with_storage(workspace, database, job)
    rows = [
        (
            r.seq,
            r.at.isoformat(timespec="seconds"),
            r.actor,
            r.action,
            r.target,
            json.dumps(r.details, ensure_ascii=False, sort_keys=True),
        )
        for r in records
    ]
    table = Table(("SEQ", "AT", "ACTOR", "ACTION", "TARGET", "DETAILS"), rows, "no audit entries")
    emit(output, [r.to_json() for r in records], table)


__all__ = ["audit", "record_local"]
