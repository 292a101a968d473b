"""The local development runner behind `flowforge run FILE.yaml`: the workflow file runs
end to end in this process on the embedded engine (SQLite in the workspace, the
in-process bus, a worker with the sandbox), without a server or a token."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Final, NoReturn

import click

from flowforge.control.scheduler import RunInputInvalid
from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.storage import RunState, StorageError
from flowforge.control.workflow import WorkflowInvalid, WorkflowVersion
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError
from flowforge.runtime import telemetry

from .live import LiveTable, summary
from .options import fail
from .output import render

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INVALID: Final = 2


def _configure_telemetry() -> None:
    """Traces and metrics as the OTEL_* variables ask (nothing is exported by default)."""
    try:
        telemetry.configure("flowforge")
    except telemetry.TelemetryConfigError as exc:
        fail(str(exc), code=EXIT_INVALID)


def _progress(message: str) -> None:
    click.echo(message, err=True)


def run_file(
    file: Path,
    value: Any,
    *,
    connectors: Path | None,
    project: str,
    concurrency: int,
    output: str,
    database: str | None,
    workspace: Path | None,
) -> NoReturn:
    """Run FILE here and exit 0 (succeeded), 1 (failed or cancelled) or 2 (invalid)."""
    structured = output != "table"
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
            table = LiveTable(list(version.steps), sys.stdout.isatty() and not structured)
            if not structured:
                engine.scheduler.listeners.append(table)
            await engine.start()
            try:
                run_id = await engine.start_run(version, value, project)
            except RunInputInvalid as exc:
                click.echo(f"error: {exc}", err=True)
                return EXIT_INVALID
            state = (await engine.scheduler.wait(run_id)).state
            if structured:
                click.echo(render(output, run_json(run_id, version, state, engine.dev), []))
            else:
                if table.tty:
                    table.draw(state)
                summary(run_id, state, engine.dev)
            return EXIT_OK if state.status == "succeeded" else EXIT_FAILED
        finally:
            await engine.close()

    _configure_telemetry()
    try:
        code = asyncio.run(main())
    except (DatabaseError, StorageError) as exc:
        fail(str(exc), code=EXIT_FAILED)
    sys.exit(code)


def run_json(run_id: str, version: WorkflowVersion, state: RunState, dev: bool) -> dict[str, Any]:
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


def resume_here(connectors: Path | None, database: str | None, workspace: Path | None) -> None:
    """Carry on every unfinished run of the workspace in this process, until each
    finishes or waits for an approval."""

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

    _configure_telemetry()
    try:
        asyncio.run(main())
    except (DatabaseError, StorageError) as exc:
        fail(str(exc), code=EXIT_FAILED)


__all__ = ["resume_here", "run_file", "run_json"]
