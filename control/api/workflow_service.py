"""`flowforge.v1.WorkflowService`: submit workflows to a project, read them back.

Versions are content-addressed and shared by every project; a project sees only the
versions submitted to it (`storage.projects`). Submit needs PUBLISHER, Get and List
VIEWER. A workflow of another project is NOT_FOUND, as if it did not exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import grpc

from flowforge.control.storage import Storage
from flowforge.control.storage.projects import ProjectVersion
from flowforge.control.workflow import WorkflowVersion, load_spec_text, validate
from flowforge.proto.v1 import workflow_pb2 as pb
from flowforge.proto.v1 import workflow_pb2_grpc as pb_grpc

from .auth import Authority, Role
from .convert import workflow_message
from .engines import Engine
from .errors import Context, domain_errors, invalid_argument, not_found

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 500
MIN_PREFIX: Final = 8


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid_argument("page_size", f"must be 0 (default {DEFAULT_PAGE}) to {MAX_PAGE}")
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


async def find_version(
    storage: Storage, project: str, name: str, version: str
) -> tuple[ProjectVersion, list[str]]:
    """The version of `name` the project holds (the latest when `version` is empty, else
    the one whose hash starts with it), and the project's versions of it before that one,
    newest first. NOT_FOUND when the project holds none."""
    if not name:
        raise invalid_argument("name", "empty: name the workflow")
    history = await storage.projects.history(project, name)
    if not history:
        raise not_found("workflow", name, f"no workflow {name!r} in project {project!r}")
    if not version:
        return history[0], [v.version for v in history[1:]]
    if len(version) < MIN_PREFIX:
        raise invalid_argument("version", f"give at least {MIN_PREFIX} hex digits")
    for index, held in enumerate(history):
        if held.version.startswith(version):
            if any(v.version.startswith(version) for v in history[index + 1 :]):
                raise invalid_argument("version", f"{version!r} matches several versions")
            return held, [v.version for v in history[index + 1 :]]
    raise not_found(
        "workflow version", f"{name}@{version}", f"workflow {name!r} has no version {version!r}"
    )


OnSubmit = Callable[[], Awaitable[object]]


class WorkflowServicer(pb_grpc.WorkflowServiceServicer):
    def __init__(
        self, engine: Engine, authority: Authority, on_submit: OnSubmit | None = None
    ) -> None:
        self.engine = engine
        self.on_submit = on_submit  # e.g. the trigger manager's refresh
        self.storage = engine.storage
        self.authority = authority
        # Validation may build development connectors (slow, blocking): one at a time,
        # off the event loop.
        self._validating = asyncio.Lock()

    async def _validate(self, text: str, source: str) -> WorkflowVersion:
        spec = load_spec_text(text, source)
        async with self._validating:
            return await asyncio.to_thread(validate, spec, self.engine.resolver)

    async def _notify(self) -> None:
        """Tell the trigger manager; the version is stored whatever it says (its periodic
        refresh catches up), so a failure here is logged, not returned."""
        assert self.on_submit is not None
        try:
            await self.on_submit()
        except Exception:
            logging.getLogger(__name__).exception("trigger refresh after a submit failed")

    async def Submit(
        self, request: pb.SubmitWorkflowRequest, context: Context
    ) -> pb.SubmitWorkflowResponse:
        caller = await self.authority.check(context, request.project, Role.PUBLISHER)
        async with domain_errors(context):
            if not request.yaml.strip():
                raise invalid_argument("yaml", "empty: send the workflow's YAML text")
            version = await self._validate(request.yaml, request.source_name or "<workflow>")
            await self.storage.versions.put(version.name, version.version, version.canonical)
            held, created = await self.storage.projects.hold(
                caller.project, version.name, version.version, caller.actor
            )
            if created:
                await self.storage.audit.append(
                    caller.actor,
                    "workflow.submit",
                    f"workflow:{caller.project}/{version.name}@{version.version}",
                    {"project": caller.project, "name": version.name, "version": version.version},
                )
                if self.on_submit is not None:
                    await self._notify()
            return pb.SubmitWorkflowResponse(
                workflow=workflow_message(held, version.canonical), created=created
            )

    async def Get(self, request: pb.GetWorkflowRequest, context: Context) -> pb.Workflow:
        caller = await self.authority.check(context, request.project, Role.VIEWER)
        async with domain_errors(context):
            held, earlier = await find_version(
                self.storage, caller.project, request.name, request.version
            )
            stored = await self.storage.versions.get(held.version)
            return workflow_message(held, stored.canonical, earlier)

    async def List(
        self, request: pb.ListWorkflowsRequest, context: Context
    ) -> pb.ListWorkflowsResponse:
        caller = await self.authority.check(context, request.project, Role.VIEWER)
        async with domain_errors(context):
            limit = page_size(request.page_size)
            try:
                page = await self.storage.projects.workflows(
                    caller.project, limit=limit, cursor=request.page_token or None
                )
            except ValueError as exc:
                raise invalid_argument("page_token", str(exc)) from None
            found = []
            for held in page.latest:
                stored = await self.storage.versions.get(held.version)
                found.append(workflow_message(held, stored.canonical))
            return pb.ListWorkflowsResponse(workflows=found, next_page_token=page.next_cursor or "")


def add_workflow_service(
    server: grpc.aio.Server,
    engine: Engine,
    authority: Authority,
    on_submit: OnSubmit | None = None,
) -> WorkflowServicer:
    servicer = WorkflowServicer(engine, authority, on_submit)
    pb_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
    return servicer


__all__ = ["WorkflowServicer", "add_workflow_service", "find_version", "page_size"]
