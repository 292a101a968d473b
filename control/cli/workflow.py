"""`flowforge workflow ...`: submit workflow files as immutable versions and read them
back, through the API (`WorkflowService`)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from flowforge.control.api.client import Api
from flowforge.control.workflow.spec import REGENERATE, workflow_schema_text
from flowforge.control.workflow.version import diff_canonical
from flowforge.proto.v1 import workflow_pb2

from .api_call import ClientOptions, call_api, client_options
from .options import fail
from .output import Table, emit
from .schemadoc import schema_command


@click.group()
def workflow() -> None:
    """Submit, list, show and compare workflow versions.

    \b
    Examples:
      flowforge workflow submit examples/workflows/paid-orders-export.yaml
      flowforge workflow list --output json
      flowforge workflow show paid-orders-export@3f2a91c0
    """


workflow.add_command(schema_command(workflow_schema_text, "a workflow file", REGENERATE))


def _canonical(found: workflow_pb2.Workflow) -> Any:
    try:
        return json.loads(found.canonical_json)
    except ValueError:
        return found.canonical_json


def _pins(found: workflow_pb2.Workflow) -> dict[str, Any]:
    canonical = _canonical(found)
    pins = canonical.get("pins") if isinstance(canonical, dict) else None
    return pins if isinstance(pins, dict) else {}


def _submitted(found: workflow_pb2.Workflow) -> str | None:
    if not found.HasField("created_at"):
        return None
    return found.created_at.ToDatetime(tzinfo=UTC).isoformat()


def _document(found: workflow_pb2.Workflow, *, canonical: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": found.name,
        "version": found.version,
        "project": found.project,
        "created_at": _submitted(found),
        "steps": list(found.steps),
        "pins": _pins(found),
    }
    if found.history:
        doc["history"] = list(found.history)
    if canonical:
        doc["canonical"] = _canonical(found)
    return doc


@workflow.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--connectors",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Development, in-process only: resolve `uses` against local connector folders "
    "(built unsigned).",
)
@client_options
def submit(file: Path, connectors: Path | None, client: ClientOptions) -> None:
    """Validate FILE and store it as an immutable version (the same content is the same
    version). Prints the version and each connector's pin; every problem is listed with
    its line and column.

    \b
    Examples:
      flowforge workflow submit wf.yaml --project billing
      flowforge workflow submit wf.yaml --server https://ff.example.com:50051 --output json
    Exit codes: 0 stored (or already stored); 1 refused or unreachable; 2 invalid workflow.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    client = replace(client, connectors=connectors)
    request = workflow_pb2.SubmitWorkflowRequest(
        project=client.project, yaml=text, source_name=str(file)
    )

    async def job(api: Api) -> workflow_pb2.SubmitWorkflowResponse:
        return await api.workflows.Submit(request)

    answer: workflow_pb2.SubmitWorkflowResponse = call_api(client, job)
    found = answer.workflow

    def human() -> list[str]:
        state = "stored" if answer.created else "already stored"
        lines = [f"{found.name}@{found.version[:12]} {state} (version {found.version})"]
        for step, pin in sorted(_pins(found).items()):
            digest = str(pin.get("digest", ""))
            lines.append(f"  {step}: {pin.get('name')}@{pin.get('version')} sha256:{digest[:12]}")
        return lines

    emit(client.output, {**_document(found), "created": answer.created}, human)


@workflow.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="Workflows per page.")  # fmt: skip
@click.option("--page-token", default="", help="Carry on from an earlier page.")
@client_options
def list_command(limit: int, page_token: str, client: ClientOptions) -> None:
    """List the project's workflows with their latest version.

    \b
    Example:
      flowforge workflow list --project billing --output yaml
    """
    request = workflow_pb2.ListWorkflowsRequest(
        project=client.project, page_size=limit, page_token=page_token
    )

    async def job(api: Api) -> workflow_pb2.ListWorkflowsResponse:
        return await api.workflows.List(request)

    page: workflow_pb2.ListWorkflowsResponse = call_api(client, job)
    found = list(page.workflows)
    document = {
        "workflows": [_document(w) for w in found],
        "next_page_token": page.next_page_token or None,
    }

    def human() -> list[str]:
        rows = [
            [w.name, w.version[:12], len(w.steps), (_submitted(w) or "")[:16].replace("T", " ")]
            for w in found
        ]
        empty = "(no workflows; flowforge workflow submit FILE)"
        lines = Table(["WORKFLOW", "LATEST", "STEPS", "SUBMITTED (UTC)"], rows, empty).lines()
        if page.next_page_token:
            lines.append(f"(more: --page-token {page.next_page_token})")
        return lines

    emit(client.output, document, human)


def _get(api: Api, project: str, name: str, version: str) -> Any:
    return api.workflows.Get(
        workflow_pb2.GetWorkflowRequest(project=project, name=name, version=version)
    )


@workflow.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@client_options
def show(ref: str, client: ClientOptions) -> None:
    """Print a stored version (the latest, or the one whose hash starts with VERSION) as
    its canonical JSON: the normalised spec and each connector's pin.

    \b
    Example:
      flowforge workflow show paid-orders-export@3f2a91c0 --output json
    """
    name, _sep, prefix = ref.partition("@")

    async def job(api: Api) -> workflow_pb2.Workflow:
        found: workflow_pb2.Workflow = await _get(api, client.project, name, prefix)
        return found

    found: workflow_pb2.Workflow = call_api(client, job)

    def human() -> list[str]:
        lines = [f"# {found.name}@{found.version}"]
        lines += [f"# earlier: {', '.join(v[:12] for v in found.history)}"] if found.history else []
        lines.append(json.dumps(_canonical(found), indent=2, ensure_ascii=False))
        return lines

    emit(client.output, _document(found, canonical=True), human)


@workflow.command("diff")
@click.argument("name")
@click.argument("v1")
@click.argument("v2")
@client_options
def diff_command(name: str, v1: str, v2: str, client: ClientOptions) -> None:
    """What changed from version V1 to V2 of NAME (hash prefixes), one line per value.

    There is no diff call in the API: both versions are read with `Get` and compared here.

    \b
    Example:
      flowforge workflow diff paid-orders-export 3f2a91c0 77b0e4d1
    """

    async def job(api: Api) -> tuple[workflow_pb2.Workflow, workflow_pb2.Workflow]:
        return await _get(api, client.project, name, v1), await _get(api, client.project, name, v2)

    a, b = call_api(client, job)
    lines = diff_canonical(a.canonical_json, b.canonical_json)
    document = {"name": name, "from": a.version, "to": b.version, "changes": lines}
    emit(client.output, document, lines or ["(the same version)"])
