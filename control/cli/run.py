"""`flowforge run ...`: run a workflow file end to end in this process, and decide or
cancel runs recorded in the workspace's database.

Layout: `run` is a group whose default command is `start`, so the README's main command
`flowforge run FILE.yaml --input JSON` is `flowforge run start FILE.yaml ...`, and
`flowforge run approve RUN STEP` coexists with it. A first argument that names a
subcommand is that subcommand; anything else is a file for `start` (a file literally
named `approve` is `flowforge run start approve`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from flowforge.control.scheduler import ActiveRun, RunInputInvalid
from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.scheduler.offline import record_approval, record_cancel
from flowforge.control.storage import (
    Event,
    EventType,
    RunState,
    Storage,
    StorageError,
)
from flowforge.control.workflow import WorkflowInvalid, WorkflowVersion
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError

from .options import fail, workspace_option
from .workspace_db import with_storage

T = TypeVar("T")
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INVALID: Final = 2

database_option = click.option(
    "--database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)


class _DefaultToStart(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to `start`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToStart)
def run() -> None:
    """Run a workflow file here and now (`flowforge run FILE`), or decide on a run.

    \b
    Examples:
      flowforge run examples/workflows/paid-orders-export.yaml --connectors connectors \\
        --input '{"csv": "id,customer,status\\n1,Ada,paid\\n"}'
      flowforge run approve r18c2f-5d1e sign_off --comment "ok"
    """


# --- the live table ----------------------------------------------------------------------

_SYMBOL: Final = {
    "pending": ".",
    "dispatched": ">",
    "succeeded": "ok",
    "failed": "FAIL",
    "retry-scheduled": "retry",
    "skipped": "skip",
    "waiting-approval": "wait",
}


def _describe(event: Event) -> str:
    data = event.data
    step = data.get("step")
    kind = event.type
    if kind is EventType.RUN_STARTED:
        dev = " (unsigned development connectors)" if data.get("unsigned_dev") else ""
        return f"run started{dev}"
    if kind is EventType.STEP_DISPATCHED:
        return f"{step}: dispatched (attempt {data.get('attempt')})"
    if kind is EventType.STEP_SUCCEEDED:
        return f"{step}: succeeded in {data.get('wall_ms', 0):.2f} ms"
    if kind in (EventType.STEP_FAILED, EventType.STEP_RETRY_SCHEDULED):
        error = data.get("error") or {}
        what = "failed" if kind is EventType.STEP_FAILED else f"retry at {data.get('retry_at')}"
        return f"{step}: {what}: {error.get('kind')}: {error.get('message')}"
    if kind is EventType.STEP_SKIPPED:
        return f"{step}: skipped ({data.get('reason')})"
    if kind is EventType.APPROVAL_REQUESTED:
        message = f": {data['message']}" if data.get("message") else ""
        return f"{step}: waiting for approval{message}"
    if kind in (EventType.APPROVAL_GRANTED, EventType.APPROVAL_REJECTED):
        verb = "approved" if kind is EventType.APPROVAL_GRANTED else "rejected"
        return f"{step}: {verb} by {data.get('by') or 'timeout'}"
    if kind is EventType.RUN_SUCCEEDED:
        return "run succeeded"
    return f"run {kind.value.removeprefix('run-')}: {data.get('reason', '')}"


class LiveTable:
    """The steps of one run: redrawn in place on a terminal, one line per event elsewhere."""

    def __init__(self, version: WorkflowVersion, tty: bool) -> None:
        self.version = version
        self.tty = tty
        self.drawn = 0
        self.run_id: str | None = None

    def __call__(self, run: ActiveRun, events: Sequence[Event]) -> None:
        if self.run_id is None:
            self.run_id = run.id
        if run.id != self.run_id:
            return
        if not self.tty:
            for event in events:
                stamp = event.at.astimezone().strftime("%H:%M:%S.%f")[:-3]
                click.echo(f"{stamp} {_describe(event)}")
            return
        self.draw(run.state)

    def draw(self, state: RunState) -> None:
        lines = [f"run {self.run_id}  {state.status}"]
        for step_id in self.version.steps:
            step = state.step(step_id)
            detail = ""
            if step.status == "failed" or step.status == "retry-scheduled":
                error = step.error if isinstance(step.error, dict) else {}
                detail = f"{error.get('kind', '')}: {error.get('message', '')}"[:60]
            elif step.duration_s is not None:
                detail = f"{step.duration_s * 1000:.1f} ms"
            attempt = f"#{step.attempt}" if step.attempt > 1 else ""
            lines.append(
                f"  {step_id:<20} {_SYMBOL.get(step.status, step.status):<6} {attempt:<4} {detail}"
            )
        if self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F")
        sys.stdout.write("".join(f"{line}\x1b[K\n" for line in lines))
        sys.stdout.flush()
        self.drawn = len(lines)


def _json_input(text: str) -> Any:
    source = text
    if text == "-":
        source = sys.stdin.read()
    elif text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"--input: cannot read {text[1:]}: {exc.strerror}")
    try:
        return json.loads(source)
    except ValueError as exc:
        fail(f"--input is not valid JSON: {exc}; quote it, e.g. '{{\"a\": 1}}'")


def _progress(message: str) -> None:
    click.echo(message, err=True)


@run.command("start")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--input", "input_text", default="{}", show_default=True, metavar="JSON",
              help="The run's input: JSON text, @FILE, or - for stdin.")  # fmt: skip
@click.option(
    "--connectors",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Development: resolve `uses` against local connector folders (built and run "
    "unsigned; the run record says so).",
)
@click.option("--project", default="default", show_default=True, help="Project (for secrets).")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=4, show_default=True, help="Steps at once."
)
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@database_option
@workspace_option
def start(
    file: Path,
    input_text: str,
    connectors: Path | None,
    project: str,
    concurrency: int,
    output: str,
    database: str | None,
    workspace: Path | None,
) -> None:
    """Run the workflow in FILE end to end in this process and print its steps live.

    Everything runs here: SQLite in the workspace, an in-process bus, a worker with the
    sandbox. Without --connectors, `uses` resolves to connectors installed in the
    workspace (signed packages, checked against its trust store).

    \b
    Exit codes: 0 the run succeeded; 1 it failed (or was cancelled); 2 the workflow or
    its input is invalid.
    """
    value = _json_input(input_text)
    as_json = output == "json"
    root = workspace_dir(workspace)

    async def main() -> int:
        engine = await EmbeddedEngine.open(
            root,
            database=database,
            dev_connectors=connectors,
            concurrency=concurrency,
            progress=_progress,
            start=False,
        )
        try:
            try:
                version = await asyncio.to_thread(engine.load, file)
            except WorkflowInvalid as exc:
                click.echo(str(exc), err=True)
                return EXIT_INVALID
            if engine.dev:
                click.echo(
                    "warning: development connectors: built from "
                    f"{connectors} and run unsigned (the run record says so)",
                    err=True,
                )
            table = LiveTable(version, sys.stdout.isatty() and not as_json)
            if not as_json:
                engine.scheduler.listeners.append(table)
            await engine.start()
            try:
                run_id = await engine.start_run(version, value, project)
            except RunInputInvalid as exc:
                click.echo(f"error: {exc}", err=True)
                return EXIT_INVALID
            result = await engine.scheduler.wait(run_id)
            state = result.state
            if as_json:
                click.echo(json.dumps(_run_json(run_id, version, state, engine.dev)))
            else:
                if table.tty:
                    table.draw(state)
                _summary(run_id, state, engine.dev)
            return EXIT_OK if state.status == "succeeded" else EXIT_FAILED
        finally:
            await engine.close()

    try:
        code = asyncio.run(main())
    except (DatabaseError, StorageError) as exc:
        fail(str(exc), code=EXIT_FAILED)
    sys.exit(code)


def _run_json(run_id: str, version: WorkflowVersion, state: RunState, dev: bool) -> dict[str, Any]:
    return {
        "run": run_id,
        "workflow": version.name,
        "version": version.version,
        "status": state.status.value,
        "unsigned_dev": dev,
        "outputs": state.outputs,
        "error": state.error,
        "steps": {
            step_id: {
                "status": step.status.value,
                "attempt": step.attempt,
                "output": step.output,
                "error": step.error,
            }
            for step_id, step in state.steps.items()
        },
    }


def _summary(run_id: str, state: RunState, dev: bool) -> None:
    took = ""
    if state.started_at is not None and state.finished_at is not None:
        took = f" in {(state.finished_at - state.started_at).total_seconds() * 1000:.1f} ms"
    click.echo(f"run {run_id} {state.status}{took}")
    if dev:
        click.echo("(ran unsigned development connectors)")
    if state.status == "succeeded":
        click.echo(json.dumps(state.outputs, indent=2, ensure_ascii=False))
    elif state.error is not None:
        error = state.error
        click.echo(f"error: {error.get('message') if isinstance(error, dict) else error}")


# --- decisions against the workspace's database --------------------------------------------


def _decide(
    run_id: str,
    step: str,
    approved: bool,
    comment: str | None,
    by: str | None,
    workspace: Path | None,
    database: str | None,
) -> None:
    who = by or _user()

    async def job(storage: Storage) -> RunState:
        return await record_approval(storage, run_id, step, approved, by=who, comment=comment)

    state = with_storage(workspace, database, job)
    verb = "approved" if approved else "rejected"
    click.echo(f"{verb} step {step} of run {run_id} (run now {state.status})")
    if approved:
        click.echo("the process running it carries on (or `flowforge run resume` does)")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


_by = click.option("--by", default=None, help="Who decides (default: the current user).")
_comment = click.option("--comment", default=None, help="Recorded with the decision.")


@run.command("approve")
@click.argument("run_id", metavar="RUN")
@click.argument("step")
@_comment
@_by
@database_option
@workspace_option
def approve(
    run_id: str,
    step: str,
    comment: str | None,
    by: str | None,
    database: str | None,
    workspace: Path | None,
) -> None:
    """Approve STEP of RUN (an approval step waiting for a decision)."""
    _decide(run_id, step, True, comment, by, workspace, database)


@run.command("reject")
@click.argument("run_id", metavar="RUN")
@click.argument("step")
@_comment
@_by
@database_option
@workspace_option
def reject(
    run_id: str,
    step: str,
    comment: str | None,
    by: str | None,
    database: str | None,
    workspace: Path | None,
) -> None:
    """Reject STEP of RUN: the run fails, saying who rejected it and why."""
    _decide(run_id, step, False, comment, by, workspace, database)


@run.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="cancelled from the command line", show_default=True)
@database_option
@workspace_option
def cancel(run_id: str, reason: str, database: str | None, workspace: Path | None) -> None:
    """Cancel RUN."""

    async def job(storage: Storage) -> RunState:
        return await record_cancel(storage, run_id, reason)

    state = with_storage(workspace, database, job)
    click.echo(f"run {run_id} {state.status}")


@run.command("resume")
@click.option(
    "--connectors",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Development connector folders, as the runs were started with.",
)
@database_option
@workspace_option
def resume(connectors: Path | None, database: str | None, workspace: Path | None) -> None:
    """Carry on every unfinished run of the workspace here, until each finishes or waits
    for an approval."""

    async def main() -> None:
        engine = await EmbeddedEngine.open(
            workspace_dir(workspace), database=database, dev_connectors=connectors, start=False
        )
        try:
            ids = [r.id for r in await engine.storage.events.unfinished_runs()]
            await engine.start()

            def moving() -> bool:
                for run_id in ids:
                    active = engine.scheduler.active(run_id)
                    if active is not None and not active.state.waiting_approval:
                        return True
                return False

            while moving():
                await asyncio.sleep(0.05)
            for run_id in ids:
                active = engine.scheduler.active(run_id)
                if active is not None:
                    click.echo(f"run {run_id} {active.state.status}")
                else:
                    click.echo(f"run {run_id} {(await engine.scheduler.wait(run_id)).state.status}")
            if not ids:
                click.echo("no unfinished runs")
        finally:
            await engine.close()

    try:
        asyncio.run(main())
    except (DatabaseError, StorageError) as exc:
        fail(str(exc), code=EXIT_FAILED)
