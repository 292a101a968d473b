"""`flowforge.v1.RunService`: start runs of a project's workflows, read and list them,
watch their events and logs, and decide on them.

Roles: Get, List, Watch and Logs need VIEWER; Start, Cancel, Approve, Reject and Retry
OPERATOR. A run of another project is NOT_FOUND, exactly as an unknown one (no
existence leak).

Watch subscribes to the scheduler's listeners first, then replays the stored events after
`after_seq`, then forwards live ones, dropping any `seq` it has already sent and filling a
gap from storage; so a client that lost its stream and resumes from the last `seq` it saw
gets every event once. It also polls storage, for events another process appended (an
approval recorded elsewhere, another scheduler over NATS). It ends after the run's final
event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

import grpc

from flowforge.control.scheduler import ActiveRun
from flowforge.control.scheduler.offline import record_approval, record_cancel
from flowforge.control.storage import (
    Event,
    EventType,
    RunRecord,
    RunState,
    StepStatus,
    UnknownRun,
)
from flowforge.proto.v1 import run_pb2 as pb
from flowforge.proto.v1 import run_pb2_grpc as pb_grpc

from .auth import Authority, Caller, Role
from .convert import event_message, log_message, parse_status, run_message
from .engines import Engine
from .errors import (
    Context,
    domain_errors,
    failed_precondition,
    invalid_argument,
    not_found,
    parse_json,
)
from .workflow_service import find_version, page_size

FINAL_EVENTS: Final = frozenset(
    {EventType.RUN_SUCCEEDED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)
POLL_S: Final = 1.0  # how often a stream looks at storage for what listeners cannot see
LOG_BATCH: Final = 500


class RunServicer(pb_grpc.RunServiceServicer):
    def __init__(self, engine: Engine, authority: Authority) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.scheduler = engine.scheduler
        self.authority = authority

    # --- helpers ----------------------------------------------------------------------

    async def _record(self, project: str, run_id: str) -> RunRecord:
        """The run, if it belongs to `project`; NOT_FOUND otherwise (also for a run of
        another project, so nobody learns it exists)."""
        if not run_id:
            raise invalid_argument("run_id", "empty: give the run's id")
        try:
            record = await self.storage.events.run(run_id)
        except UnknownRun:
            record = None
        if record is None or record.project != project:
            raise not_found("run", run_id, f"no run {run_id!r} in project {project!r}")
        return record

    async def _message(self, record: RunRecord) -> pb.Run:
        events = await self.storage.events.read(record.id)
        retries = await self.storage.projects.retries_of([record.id])
        return run_message(record, events, retries.get(record.id))

    async def _fresh(self, run_id: str) -> pb.Run:
        return await self._message(await self.storage.events.run(run_id))

    async def _state(self, record: RunRecord) -> RunState:
        return RunState.fold(await self.storage.events.read(record.id))

    async def _start(self, caller: Caller, version_id: str, run_input: object) -> str:
        version = await self.scheduler.catalog.get(version_id)
        self.engine.ensure_pools(version)
        return await self.scheduler.start_run(
            version, run_input, caller.project, unsigned_dev=self.engine.dev
        )

    # --- unary calls ------------------------------------------------------------------

    async def Start(self, request: pb.StartRunRequest, context: Context) -> pb.Run:
        caller = await self.authority.check(context, request.project, Role.OPERATOR)
        async with domain_errors(context):
            run_input = parse_json("input_json", request.input_json, {})
            held, _ = await find_version(
                self.storage, caller.project, request.workflow, request.version
            )
            run_id = await self._start(caller, held.version, run_input)
            await self.storage.audit.append(
                caller.actor,
                "run.start",
                f"run:{run_id}",
                {"project": caller.project, "workflow": held.name, "version": held.version},
            )
            return await self._fresh(run_id)

    async def Get(self, request: pb.GetRunRequest, context: Context) -> pb.Run:
        caller = await self.authority.check(context, request.project, Role.VIEWER)
        async with domain_errors(context):
            return await self._message(await self._record(caller.project, request.run_id))

    async def List(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        caller = await self.authority.check(context, request.project, Role.VIEWER)
        async with domain_errors(context):
            try:
                statuses = [parse_status(word) for word in request.status] or None
            except ValueError as exc:
                raise invalid_argument("status", str(exc)) from None
            try:
                page = await self.storage.events.runs(
                    status=statuses,
                    workflow=request.workflow or None,
                    project=caller.project,
                    limit=page_size(request.page_size),
                    cursor=request.page_token or None,
                )
            except ValueError as exc:
                raise invalid_argument("page_token", str(exc)) from None
            retries = await self.storage.projects.retries_of(r.id for r in page.runs)
            return pb.ListRunsResponse(
                runs=[run_message(r, retry_of=retries.get(r.id)) for r in page.runs],
                next_page_token=page.next_cursor or "",
            )

    async def Cancel(self, request: pb.CancelRunRequest, context: Context) -> pb.Run:
        caller = await self.authority.check(context, request.project, Role.OPERATOR)
        async with domain_errors(context):
            record = await self._record(caller.project, request.run_id)
            state = await self._state(record)
            if state.status.finished:
                raise failed_precondition(
                    "run-finished",
                    f"runs/{record.id}",
                    f"run {record.id} has already finished ({state.status}); nothing to cancel",
                )
            reason = request.reason or f"cancelled by {caller.actor}"
            if self.scheduler.active(record.id) is not None:
                await self.scheduler.cancel(record.id, reason)
            else:  # another process runs it (or none does yet): record it in its log
                await record_cancel(self.storage, record.id, reason)
            await self.storage.audit.append(
                caller.actor, "run.cancel", f"run:{record.id}", {"reason": reason}
            )
            return await self._fresh(record.id)

    async def _decide(self, request: pb.DecideRequest, context: Context, approve: bool) -> pb.Run:
        caller = await self.authority.check(context, request.project, Role.OPERATOR)
        async with domain_errors(context):
            record = await self._record(caller.project, request.run_id)
            if not request.step:
                raise invalid_argument("step", "empty: name the approval step")
            state = await self._state(record)
            step = state.steps.get(request.step)
            if step is None:
                raise not_found(
                    "step", request.step, f"run {record.id} has no step {request.step!r}"
                )
            if state.status.finished or step.status is not StepStatus.WAITING_APPROVAL:
                now = f"the run {state.status}" if state.status.finished else f"it is {step.status}"
                raise failed_precondition(
                    "step-not-waiting",
                    f"runs/{record.id}/steps/{request.step}",
                    f"step {request.step} of run {record.id} is not waiting for approval ({now})",
                )
            comment = request.comment or None
            if self.scheduler.active(record.id) is not None:
                decide = self.scheduler.approve if approve else self.scheduler.reject
                await decide(record.id, request.step, caller.actor, comment)
            else:
                await record_approval(
                    self.storage, record.id, request.step, approve, by=caller.actor, comment=comment
                )
            action = "run.approve" if approve else "run.reject"
            await self.storage.audit.append(
                caller.actor, action, f"run:{record.id}", {"step": request.step}
            )
            return await self._fresh(record.id)

    async def Approve(self, request: pb.DecideRequest, context: Context) -> pb.Run:
        return await self._decide(request, context, True)

    async def Reject(self, request: pb.DecideRequest, context: Context) -> pb.Run:
        return await self._decide(request, context, False)

    async def Retry(self, request: pb.RetryRunRequest, context: Context) -> pb.Run:
        caller = await self.authority.check(context, request.project, Role.OPERATOR)
        async with domain_errors(context):
            record = await self._record(caller.project, request.run_id)
            if not record.status.finished:
                raise failed_precondition(
                    "run-unfinished",
                    f"runs/{record.id}",
                    f"run {record.id} is still {record.status}; retry it once it has finished "
                    "(or cancel it first)",
                )
            run_id = await self._start(caller, record.version, record.input)
            await self.storage.projects.record_retry(run_id, record.id)
            await self.storage.audit.append(
                caller.actor, "run.retry", f"run:{run_id}", {"retry_of": record.id}
            )
            return await self._fresh(run_id)

    # --- streams ----------------------------------------------------------------------

    async def Watch(
        self, request: pb.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb.RunEvent]:
        caller = await self.authority.check(context, request.project, Role.VIEWER)
        async with domain_errors(context):
            if request.after_seq < 0:
                raise invalid_argument("after_seq", "must be 0 or more")
            record = await self._record(caller.project, request.run_id)
            async for event in self._events(record, request.after_seq):
                yield event_message(event)

    async def _events(self, record: RunRecord, after_seq: int) -> AsyncIterator[Event]:
        live: asyncio.Queue[Event] = asyncio.Queue()

        def listener(run: ActiveRun, events: Sequence[Event]) -> None:
            if run.id == record.id:
                for event in events:
                    live.put_nowait(event)

        # Subscribe before the replay, so nothing appended in between is missed.
        self.scheduler.listeners.append(listener)
        try:
            last = after_seq
            pending = await self.storage.events.read(record.id, last)
            while True:
                gap = False
                for event in pending:
                    if event.seq <= last:
                        continue  # sent already
                    if event.seq != last + 1:
                        gap = True  # storage fills it below
                        break
                    last = event.seq
                    yield event
                    if event.type in FINAL_EVENTS:
                        return
                if not pending and last >= record.last_seq and record.status.finished:
                    return  # resumed after the final event: nothing more will come
                if gap:
                    pending = await self.storage.events.read(record.id, last)
                    if pending and pending[0].seq == last + 1:
                        continue
                pending = await self._next(live, record.id, last)
        finally:
            with contextlib.suppress(ValueError):
                self.scheduler.listeners.remove(listener)

    async def _next(self, live: asyncio.Queue[Event], run_id: str, last: int) -> list[Event]:
        """The events after `last`: from the listener while it is in order, else (and
        after a quiet POLL_S) from storage."""
        try:
            event = await asyncio.wait_for(live.get(), POLL_S)
        except TimeoutError:
            return await self.storage.events.read(run_id, last)
        found = [event]
        while not live.empty():
            found.append(live.get_nowait())
        fresh = [e for e in found if e.seq > last]
        if fresh and all(e.seq == last + i for i, e in enumerate(fresh, start=1)):
            return fresh
        if not fresh:
            return []
        return await self.storage.events.read(run_id, last)

    async def Logs(self, request: pb.LogsRequest, context: Context) -> AsyncIterator[pb.LogLine]:
        caller = await self.authority.check(context, request.project, Role.VIEWER)
        async with domain_errors(context):
            if request.after_seq < 0:
                raise invalid_argument("after_seq", "must be 0 or more")
            record = await self._record(caller.project, request.run_id)
            step = request.step or None
            last = request.after_seq
            while True:
                # Whether the run had finished is read before the lines, so the lines
                # read after it include the last ones.
                finished = (await self.storage.events.run(record.id)).status.finished
                while True:
                    lines = await self.storage.logs.read(
                        record.id, step=step, after_seq=last, limit=LOG_BATCH
                    )
                    for line in lines:
                        last = line.seq
                        yield log_message(line)
                    if len(lines) < LOG_BATCH:
                        break
                if not request.follow or finished:
                    return
                await asyncio.sleep(POLL_S / 2)


def add_run_service(server: grpc.aio.Server, engine: Engine, authority: Authority) -> RunServicer:
    servicer = RunServicer(engine, authority)
    pb_grpc.add_RunServiceServicer_to_server(servicer, server)
    return servicer


__all__ = ["FINAL_EVENTS", "RunServicer", "add_run_service"]
