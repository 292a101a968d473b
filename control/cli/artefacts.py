"""`flowforge run artefacts ...`: list and fetch the inputs and outputs a run's step
attempts were captured with, and prune old ones.

`flowforge run artefacts RUN` is `flowforge run artefacts list RUN` (a first argument that
is not a subcommand is a run id). These commands read the workspace database directly
(like `flowforge token`), not the API.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import click

from flowforge.control.storage import Storage
from flowforge.control.storage.artefacts import (
    ArtefactError,
    ArtefactRef,
    PruneReport,
)
from flowforge.runtime.files import write_atomically

from .audit import database_option
from .options import workspace_option
from .output import Table, emit, fail_as, rendered_output_option
from .workspace_db import with_storage

_DURATION: Final = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` as a duration; ValueError otherwise."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration: use a number and s, m, h, d or w (30d)")
    return timedelta(seconds=int(found.group(1)) * _UNIT_S[found.group(2)])


class _DefaultToList(click.Group):
    """A group whose first argument, when it is not a subcommand, is the run to list."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToList)
def artefacts() -> None:
    """The captured input and output of each step attempt of a run.

    Bodies are canonical JSON, stored once per sha256 digest, with the step's secret values
    masked; a body over the size limit ($FLOWFORGE_ARTEFACT_MAX_BYTES, default 1 MiB) keeps only its
    digest and size. Reads the workspace database directly (--database or
    $FLOWFORGE_DATABASE for a shared one), not the API.

    \b
    Examples:
      flowforge run artefacts r18c2f-5d1e --step fetch
      flowforge run artefacts r18c2f-5d1e --get 3a7bd3e2...c1 --out output.json
      flowforge run artefacts prune --older-than 30d
    """


def _row(ref: ArtefactRef) -> tuple[object, ...]:
    size = f"{ref.size} (truncated)" if ref.truncated else ref.size
    return (ref.step, ref.attempt, ref.kind, size, ref.digest)


@artefacts.command("list")
@click.argument("run_id", metavar="RUN")
@click.option("--step", default=None, help="Only this step's artefacts.")
@click.option("--get", "digest", default=None, metavar="DIGEST", help="Print (or --out) this body.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --get: write the body to this file instead of stdout.",
)
@rendered_output_option
@database_option
@workspace_option
def list_(
    run_id: str,
    step: str | None,
    digest: str | None,
    out: Path | None,
    output: str,
    database: str | None,
    workspace: Path | None,
) -> None:
    """List RUN's artefacts (step, attempt, kind, size, digest), or fetch one with --get.

    \b
    Examples:
      flowforge run artefacts r18c2f-5d1e
      flowforge run artefacts r18c2f-5d1e --step fetch --output json
      flowforge run artefacts r18c2f-5d1e --get 3a7bd3e2...c1 --out output.json
    """
    if out is not None and digest is None:
        fail_as(output, "--out goes with --get DIGEST (the artefact to write)")

    async def job(storage: Storage) -> tuple[list[ArtefactRef], bytes | None]:
        refs = await storage.artefacts.list(run_id, step=step)
        if digest is None:
            return refs, None
        wanted = digest.strip().lower()
        if not any(r.digest == wanted for r in refs):
            raise ArtefactError(
                f"run {run_id} has no artefact {digest}"
                + (f" for step {step}" if step else "")
                + f": `flowforge run artefacts {run_id}` lists its digests"
            )
        return refs, await storage.artefacts.get(wanted)

    refs, body = with_storage(workspace, database, job)
    if body is not None:
        if out is None:
            sys.stdout.buffer.write(body + b"\n")
            sys.stdout.flush()
            return
        try:
            write_atomically(out, body)
        except OSError as exc:
            fail_as(output, f"--out {out}: {exc}", code=1)
        click.echo(f"wrote {len(body)} bytes to {out}", err=True)
        return
    columns = ("STEP", "ATTEMPT", "KIND", "SIZE", "DIGEST")
    table = Table(columns, [_row(r) for r in refs], f"no artefacts for run {run_id}")
    emit(output, {"run": run_id, "artefacts": [r.to_json() for r in refs]}, table)


@artefacts.command("prune")
@click.option(
    "--older-than",
    "age",
    required=True,
    metavar="AGE",
    help="Remove the artefacts of runs that finished longer ago than this: 30d, 12h, 2w.",
)
@rendered_output_option
@database_option
@workspace_option
def prune(age: str, output: str, database: str | None, workspace: Path | None) -> None:
    """Remove the artefacts of runs finished more than AGE ago, then every body no
    remaining artefact uses. Unfinished runs keep theirs.

    \b
    Example:
      flowforge run artefacts prune --older-than 30d --output json
    """
    try:
        cutoff = datetime.now(UTC) - parse_age(age)
    except ValueError as exc:
        fail_as(output, f"--older-than: {exc}")

    async def job(storage: Storage) -> PruneReport:
        return await storage.artefacts.prune(cutoff)

    report = with_storage(workspace, database, job)
    document = {"cutoff": cutoff.isoformat(), "links": report.links, "blobs": report.blobs}
    line = (
        f"removed {report.links} artefacts of runs finished before "
        f"{cutoff.isoformat(timespec='seconds')} and {report.blobs} bodies no longer used"
    )
    emit(output, document, [line])


__all__ = ["artefacts", "parse_age"]
