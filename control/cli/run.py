"""`flowforge run ...`: start, follow, read and decide on runs through the API, and run a
workflow file end to end in this process (`flowforge run FILE.yaml`).

Layout: `run` is a group whose default command is `start`, so the README's main command
`flowforge run FILE.yaml --input JSON` is `flowforge run start FILE.yaml ...`, and
`flowforge run approve RUN STEP` coexists with it. A first argument that names a
subcommand is that subcommand; anything else goes to `start`, which runs an existing file
here (the local development runner, `run_local.py`) and otherwise starts the stored
workflow of that name through the API.

Without --server (or $FLOWFORGE_SERVER) the API server runs inside this command, so a
command that moves a run on (start, approve, retry) keeps it running until the run
finishes or waits for an approval: nothing else would carry it on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import click

from flowforge.control.api.client import Api
from flowforge.control.storage import Event, RunState
from flowforge.proto.v1 import run_pb2

from .api_call import ClientOptions, call_api, client_options
from .live import LiveTable, summary
from .options import fail, workspace_option
from .output import emit, emit_item, fail_as
from .run_local import resume_here, run_file
from .run_view import (
    event_document,
    log_document,
    log_text,
    run_document,
    run_lines,
    runs_table,
)
from .watching import WatchLost, follow, paused

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1

database_option = click.option(
    "--database",
    default=None,
    help="FILE only: database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)
connectors_option = click.option(
    "--connectors",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Development: resolve `uses` against local connector folders (built and run "
    "unsigned; the run record says so). In-process only.",
)


class _DefaultToStart(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to `start`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToStart)
def run() -> None:
    """Start, watch and decide on runs; or run a workflow file here (`flowforge run FILE`).

    \b
    Examples:
      flowforge run examples/workflows/paid-orders-export.yaml --connectors connectors \\
        --input '{"csv": "id,customer,status\\n1,Ada,paid\\n"}'
      flowforge run start paid-orders-export --input @order.json --watch
      flowforge run list --status failed --output json
      flowforge run approve r18c2f-5d1e sign_off --comment "ok"
    """


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


# --- following a run ------------------------------------------------------------------------


def _outcome(state: RunState) -> int:
    return EXIT_OK if state.status == "succeeded" else EXIT_FAILED


async def _watch(
    api: Api, client: ClientOptions, run: run_pb2.Run, *, until_paused: bool
) -> RunState:
    """Follow `run` live: the step table (or one line per event), or with json/yaml one
    document per event; then the summary."""
    structured = client.output != "table"
    table = LiveTable([s.id for s in run.steps], sys.stdout.isatty() and not structured)
    table.run_id = run.id

    def on_event(state: RunState, event: Event | None, message: run_pb2.RunEvent) -> None:
        if structured:
            emit_item(client.output, event_document(message), "")
        elif event is not None:
            table.show(state, [event])

    state = await follow(api, client.project, run.id, on_event, until_paused=until_paused)
    if not structured:
        if table.tty:
            table.draw(state)
        if paused(state):
            for step in sorted(state.waiting_approval):
                click.echo(
                    f"run {run.id} waits for approval of {step}: "
                    f"flowforge run approve {run.id} {step}"
                )
        else:
            summary(run.id, state, run.unsigned_dev)
    return state


async def _settle(api: Api, client: ClientOptions, run: run_pb2.Run) -> run_pb2.Run:
    """In-process: keep the server up until the run finishes or pauses, then re-read it.
    Against a server: the run as it is (the server carries it on)."""
    if not api.in_process:
        return run
    click.echo(f"run {run.id}: running it here until it finishes or waits ...", err=True)

    def quiet(_state: RunState, _event: Event | None, _message: run_pb2.RunEvent) -> None:
        return None

    await follow(api, client.project, run.id, quiet, until_paused=True)
    return await api.runs.Get(run_pb2.GetRunRequest(project=client.project, run_id=run.id))


def _call(client: ClientOptions, job: Any) -> Any:
    """`call_api`, with a watch that lost its stream reported like any failure."""

    async def guarded(api: Api) -> Any:
        try:
            return await job(api)
        except WatchLost as exc:
            fail_as(client.output, str(exc), code=EXIT_FAILED, kind="watch-lost")

    return call_api(client, guarded)


# --- start ----------------------------------------------------------------------------------


@run.command("start")
@click.argument("target", metavar="FILE|NAME")
@click.option("--input", "input_text", default="{}", show_default=True, metavar="JSON",
              help="The run's input: JSON text, @FILE, or - for stdin.")  # fmt: skip
@click.option(
    "--version", "version", default="", help="NAME: a version (hash prefix); default the latest."
)
@click.option("--watch", is_flag=True, help="NAME: follow the run live; exit code by its outcome.")
@connectors_option
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
    help="FILE: steps at once.",
)  # fmt: skip
@database_option
@client_options
def start(
    target: str,
    input_text: str,
    version: str,
    watch: bool,
    connectors: Path | None,
    concurrency: int,
    database: str | None,
    client: ClientOptions,
) -> None:
    """Start a run of FILE (here, now) or of the submitted workflow NAME (through the API).

    FILE, an existing workflow file, runs end to end in this process and its steps are
    shown live: SQLite in the workspace, an in-process bus, a worker with the sandbox.
    Without --connectors, `uses` resolves to connectors installed in the workspace
    (signed packages, checked against its trust store).

    NAME starts the latest (or --version) submitted version of that workflow on the
    server and prints the run; --watch follows it. Without a server the run is carried on
    here until it finishes or waits for an approval.

    \b
    Examples:
      flowforge run start examples/workflows/paid-orders-export.yaml --connectors connectors
      flowforge run start paid-orders-export --input '{"csv": "id\\n1\\n"}' --watch
      flowforge run start paid-orders-export --server https://ff.example.com:50051 \\
        --token "$FLOWFORGE_TOKEN" --output json

    \b
    Exit codes: 0 started (with --watch or FILE: succeeded); 1 it failed, was cancelled
    or the call was refused; 2 the workflow or its input is invalid.
    """
    value = _json_input(input_text)
    path = Path(target)
    if path.is_file():
        if client.server:
            click.echo(
                "note: a FILE runs in this process; to run it on the server: "
                "flowforge workflow submit FILE, then flowforge run start NAME",
                err=True,
            )
        run_file(
            path,
            value,
            connectors=connectors,
            project=client.project,
            concurrency=concurrency,
            output=client.output,
            database=database,
            workspace=client.workspace,
        )
    if target.endswith((".yaml", ".yml")) or "/" in target:
        fail(f"no such file: {target} (a NAME is the name of a submitted workflow)")
    if database is not None:
        fail("--database applies to a FILE; a server (or the in-process one) has its own")
    client = replace(client, connectors=connectors)
    request = run_pb2.StartRunRequest(
        project=client.project, workflow=target, version=version, input_json=json.dumps(value)
    )

    async def job(api: Api) -> int:
        started = await api.runs.Start(request)
        if watch:
            return _outcome(await _watch(api, client, started, until_paused=api.in_process))
        if not api.in_process:
            emit(client.output, run_document(started), _started_lines(started))
            return EXIT_OK
        final = await _settle(api, client, started)
        emit(client.output, run_document(final), lambda: run_lines(final))
        return EXIT_FAILED if final.status in ("failed", "cancelled") else EXIT_OK

    sys.exit(_call(client, job))


def _started_lines(run: run_pb2.Run) -> list[str]:
    return [
        f"run {run.id} started: {run.workflow}@{run.version[:12]} ({run.status})",
        f"  follow it: flowforge run watch {run.id}",
    ]


# --- read -------------------------------------------------------------------------------------


@run.command("get")
@click.argument("run_id", metavar="RUN")
@client_options
def get(run_id: str, client: ClientOptions) -> None:
    """Show RUN: its status, each step, and its output or error.

    \b
    Example:
      flowforge run get r18c2f-5d1e --output yaml
    """

    async def job(api: Api) -> run_pb2.Run:
        return await api.runs.Get(run_pb2.GetRunRequest(project=client.project, run_id=run_id))

    found: run_pb2.Run = _call(client, job)
    emit(client.output, run_document(found), lambda: run_lines(found))


@run.command("list")
@click.option("--workflow", default="", help="Only runs of this workflow.")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              help="Only runs in this status (running, waiting, succeeded, failed, cancelled); "
              "repeat for several.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="Runs per page.")  # fmt: skip
@click.option("--page-token", default="", help="Carry on from an earlier page.")
@client_options
def list_command(
    workflow: str,
    statuses: Sequence[str],
    limit: int,
    page_token: str,
    client: ClientOptions,
) -> None:
    """List the project's runs, newest first, a page at a time.

    \b
    Examples:
      flowforge run list --workflow paid-orders-export --status failed
      flowforge run list --limit 20 --page-token "$NEXT" --output json
    """
    request = run_pb2.ListRunsRequest(
        project=client.project,
        workflow=workflow,
        status=list(statuses),
        page_size=limit,
        page_token=page_token,
    )

    async def job(api: Api) -> run_pb2.ListRunsResponse:
        return await api.runs.List(request)

    page: run_pb2.ListRunsResponse = _call(client, job)
    runs = list(page.runs)
    document = {
        "runs": [run_document(r) for r in runs],
        "next_page_token": page.next_page_token or None,
    }

    def human() -> list[str]:
        lines = runs_table(runs).lines()
        if page.next_page_token:
            lines.append(f"(more: --page-token {page.next_page_token})")
        return lines

    emit(client.output, document, human)


@run.command("watch")
@click.argument("run_id", metavar="RUN")
@client_options
def watch_command(run_id: str, client: ClientOptions) -> None:
    """Follow RUN live until it finishes: a table of its steps redrawn in place on a
    terminal, one line per event otherwise (one document per event with --output
    json|yaml). A dropped stream is reopened after the last event seen.

    \b
    Example:
      flowforge run watch r18c2f-5d1e
    Exit codes: 0 the run succeeded; 1 it failed, was cancelled, or (in-process) waits
    for an approval.
    """

    async def job(api: Api) -> int:
        found = await api.runs.Get(run_pb2.GetRunRequest(project=client.project, run_id=run_id))
        return _outcome(await _watch(api, client, found, until_paused=api.in_process))

    sys.exit(_call(client, job))


@run.command("logs")
@click.argument("run_id", metavar="RUN")
@click.option("--step", default="", help="Only this step's lines.")
@click.option("--follow", "follow_", is_flag=True, help="Keep printing until the run finishes.")
@client_options
def logs(run_id: str, step: str, follow_: bool, client: ClientOptions) -> None:
    """Print RUN's log lines: its connectors', workers' and scheduler's.

    \b
    Examples:
      flowforge run logs r18c2f-5d1e --step fetch
      flowforge run logs r18c2f-5d1e --follow --output json
    """
    request = run_pb2.LogsRequest(project=client.project, run_id=run_id, step=step, follow=follow_)

    async def job(api: Api) -> int:
        count = 0
        async for line in api.runs.Logs(request):
            count += 1
            emit_item(client.output, log_document(line), log_text(line))
        if count == 0 and client.output == "table":
            click.echo("(no log lines)", err=True)
        return EXIT_OK

    sys.exit(_call(client, job))


# --- decide -----------------------------------------------------------------------------------

_comment = click.option("--comment", default="", help="Recorded with the decision.")


def _decide(run_id: str, step: str, approved: bool, comment: str, client: ClientOptions) -> None:
    request = run_pb2.DecideRequest(
        project=client.project, run_id=run_id, step=step, comment=comment
    )
    verb = "approved" if approved else "rejected"

    async def job(api: Api) -> run_pb2.Run:
        decided = await (api.runs.Approve if approved else api.runs.Reject)(request)
        return await _settle(api, client, decided)

    after: run_pb2.Run = _call(client, job)
    emit(
        client.output,
        run_document(after),
        [f"{verb} step {step} of run {run_id} (run now {after.status})"],
    )


@run.command("approve")
@click.argument("run_id", metavar="RUN")
@click.argument("step")
@_comment
@client_options
def approve(run_id: str, step: str, comment: str, client: ClientOptions) -> None:
    """Approve STEP of RUN (an approval step waiting for a decision); the run carries on.

    \b
    Example:
      flowforge run approve r18c2f-5d1e sign_off --comment "checked the totals"
    """
    _decide(run_id, step, True, comment, client)


@run.command("reject")
@click.argument("run_id", metavar="RUN")
@click.argument("step")
@_comment
@client_options
def reject(run_id: str, step: str, comment: str, client: ClientOptions) -> None:
    """Reject STEP of RUN: the run fails, saying who rejected it and why.

    \b
    Example:
      flowforge run reject r18c2f-5d1e sign_off --comment "wrong customer"
    """
    _decide(run_id, step, False, comment, client)


@run.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="cancelled from the command line", show_default=True)
@client_options
def cancel(run_id: str, reason: str, client: ClientOptions) -> None:
    """Cancel RUN: steps not yet finished are not started.

    \b
    Example:
      flowforge run cancel r18c2f-5d1e --reason "duplicate order"
    """
    request = run_pb2.CancelRunRequest(project=client.project, run_id=run_id, reason=reason)

    async def job(api: Api) -> run_pb2.Run:
        return await api.runs.Cancel(request)

    after: run_pb2.Run = _call(client, job)
    emit(client.output, run_document(after), [f"run {run_id} {after.status}"])


@run.command("retry")
@click.argument("run_id", metavar="RUN")
@client_options
def retry(run_id: str, client: ClientOptions) -> None:
    """Start a new run of finished RUN's version with the same input.

    \b
    Example:
      flowforge run retry r18c2f-5d1e --output json
    """
    request = run_pb2.RetryRunRequest(project=client.project, run_id=run_id)

    async def job(api: Api) -> run_pb2.Run:
        return await _settle(api, client, await api.runs.Retry(request))

    again: run_pb2.Run = _call(client, job)
    emit(
        client.output,
        run_document(again),
        [
            f"run {again.id} ({again.status}): retry of {run_id}",
            f"  flowforge run watch {again.id}",
        ],
    )


@run.command("resume")
@connectors_option
@database_option
@workspace_option
def resume(connectors: Path | None, database: str | None, workspace: Path | None) -> None:
    """Carry on every unfinished run of the workspace here (no server), until each
    finishes or waits for an approval.

    \b
    Example:
      flowforge run resume --connectors connectors
    """
    resume_here(connectors, database, workspace)


from .artefacts import artefacts as _artefacts  # noqa: E402  (AUD: `run artefacts`)

run.add_command(_artefacts)

__all__ = ["run"]
