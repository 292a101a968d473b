"""RunService and WorkflowService end to end on the embedded engine: submit, start,
watch, get, list with filters and pages, decide, cancel, retry."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from flowforge.control.storage import EventType, NewLogLine
from flowforge.proto.v1 import run_pb2, run_pb2_grpc, workflow_pb2

from .conftest import CHAIN, GATED, PROJECT, Api, rich_details, until


async def test_a_submitted_workflow_runs_to_completion_and_watch_streams_every_event(
    api: Api,
) -> None:
    workflow = await api.submit(CHAIN)
    assert workflow.name == "chain" and workflow.project == PROJECT
    assert list(workflow.steps) == ["first", "second", "third"]
    run = await api.start("chain", '{"n": 7}')
    assert run.workflow == "chain" and run.version == workflow.version
    assert run.status in ("running", "succeeded")

    events = await api.watch(run.id)
    stored = await api.server.storage.events.read(run.id)
    assert [e.seq for e in events] == [e.seq for e in stored]
    assert [e.type for e in events] == [e.type.value for e in stored]
    assert events[-1].type == EventType.RUN_SUCCEEDED.value

    done = await api.finished(run.id)
    assert done.status == "succeeded"
    assert [s.status for s in done.steps] == ["succeeded"] * 3
    assert json.loads(done.steps[2].output_json) == {"result": 7}
    assert done.unsigned_dev is True
    assert done.last_seq == events[-1].seq


async def test_submitting_the_same_content_again_is_the_same_version(api: Api) -> None:
    request = workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=CHAIN)
    first = await api.workflows.Submit(request, metadata=api.auth())
    again = await api.workflows.Submit(request, metadata=api.auth())
    assert first.created and not again.created
    assert first.workflow.version == again.workflow.version


async def test_approve_and_reject_and_their_preconditions(api: Api) -> None:
    await api.submit(GATED)
    run = await api.start("gated")

    async def waiting() -> bool:
        got = await api.runs.Get(
            run_pb2.GetRunRequest(project=PROJECT, run_id=run.id), metadata=api.auth()
        )
        return got.status == "waiting"

    await until(waiting, 60, "the approval request")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.runs.Approve(
            run_pb2.DecideRequest(project=PROJECT, run_id=run.id, step="prepare"),
            metadata=api.auth(),
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    (failure,) = rich_details(caught.value)
    assert failure.violations[0].subject == f"runs/{run.id}/steps/prepare"

    decided = await api.runs.Approve(
        run_pb2.DecideRequest(project=PROJECT, run_id=run.id, step="sign_off", comment="ok"),
        metadata=api.auth("operator"),
    )
    assert decided.id == run.id
    done = await api.finished(run.id)
    assert done.status == "succeeded"
    assert json.loads(done.steps[-1].output_json) == {"result": True}


async def test_watch_resumes_after_a_dropped_connection_without_losing_or_repeating(
    api: Api,
) -> None:
    await api.submit(GATED)
    run = await api.start("gated")
    seen: list[run_pb2.RunEvent] = []
    # First connection: read until the run pauses, then drop the whole connection.
    first = grpc.aio.insecure_channel(api.server.address)
    stub = run_pb2_grpc.RunServiceStub(first)
    stream = stub.Watch(
        run_pb2.WatchRunRequest(project=PROJECT, run_id=run.id), metadata=api.auth()
    )
    async for event in stream:
        seen.append(event)
        if event.type == EventType.APPROVAL_REQUESTED.value:
            break
    await first.close()
    # Second connection: resume from the last seq seen, live while the run goes on.
    second = grpc.aio.insecure_channel(api.server.address)
    resumed = run_pb2_grpc.RunServiceStub(second).Watch(
        run_pb2.WatchRunRequest(project=PROJECT, run_id=run.id, after_seq=seen[-1].seq),
        metadata=api.auth(),
    )
    collect = asyncio.create_task(_collect(resumed))
    await asyncio.sleep(0)  # the stream is open before the run moves on
    await api.runs.Approve(
        run_pb2.DecideRequest(project=PROJECT, run_id=run.id, step="sign_off"),
        metadata=api.auth(),
    )
    seen.extend(await collect)
    await second.close()
    stored = await api.server.storage.events.read(run.id)
    assert [e.seq for e in seen] == [e.seq for e in stored]
    assert [e.type for e in seen] == [e.type.value for e in stored]
    assert seen[-1].type == EventType.RUN_SUCCEEDED.value
    # Resuming after the final event ends at once, with nothing.
    assert await api.watch(run.id, after_seq=seen[-1].seq) == []
    # Resuming from the middle replays exactly the rest.
    middle = seen[len(seen) // 2].seq
    assert [e.seq for e in await api.watch(run.id, after_seq=middle)] == [
        e.seq for e in stored if e.seq > middle
    ]


async def _collect(stream: Any) -> list[Any]:
    return [event async for event in stream]


async def test_list_filters_and_pages_through_runs_and_workflows(api: Api) -> None:
    await api.submit(CHAIN)
    await api.submit(GATED)
    started = [await api.start("chain", json.dumps({"n": n})) for n in range(5)]
    for run in started:
        await api.finished(run.id)
    gated = await api.start("gated")

    pages: list[list[str]] = []
    token = ""
    while True:
        request = run_pb2.ListRunsRequest(
            project=PROJECT, workflow="chain", page_size=2, page_token=token
        )
        page = await api.runs.List(request, metadata=api.auth("viewer"))
        pages.append([r.id for r in page.runs])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == [r.id for r in reversed(started)]

    done = await api.runs.List(
        run_pb2.ListRunsRequest(project=PROJECT, status=["succeeded"]), metadata=api.auth()
    )
    assert {r.id for r in done.runs} == {r.id for r in started}
    assert all(r.status == "succeeded" for r in done.runs)
    everything = await api.runs.List(run_pb2.ListRunsRequest(project=PROJECT), metadata=api.auth())
    assert gated.id in {r.id for r in everything.runs}

    first = await api.workflows.List(
        workflow_pb2.ListWorkflowsRequest(project=PROJECT, page_size=1), metadata=api.auth()
    )
    second = await api.workflows.List(
        workflow_pb2.ListWorkflowsRequest(
            project=PROJECT, page_size=1, page_token=first.next_page_token
        ),
        metadata=api.auth(),
    )
    assert [w.name for w in first.workflows] == ["chain"]
    assert [w.name for w in second.workflows] == ["gated"] and not second.next_page_token


async def test_retry_starts_a_new_run_of_the_same_version_and_input(api: Api) -> None:
    await api.submit(CHAIN)
    original = await api.finished((await api.start("chain", '{"n": 4}')).id)
    retried = await api.runs.Retry(
        run_pb2.RetryRunRequest(project=PROJECT, run_id=original.id), metadata=api.auth()
    )
    assert retried.id != original.id and retried.retry_of == original.id
    assert retried.version == original.version
    assert json.loads(retried.input_json) == {"n": 4}
    done = await api.finished(retried.id)
    assert done.status == "succeeded" and done.retry_of == original.id


async def test_cancel_stops_a_waiting_run_and_watch_ends_with_it(api: Api) -> None:
    await api.submit(GATED)
    run = await api.start("gated")

    async def waiting() -> bool:
        got = await api.runs.Get(
            run_pb2.GetRunRequest(project=PROJECT, run_id=run.id), metadata=api.auth()
        )
        return bool(got.status == "waiting")

    await until(waiting, 60, "the approval request")
    cancelled = await api.runs.Cancel(
        run_pb2.CancelRunRequest(project=PROJECT, run_id=run.id, reason="not today"),
        metadata=api.auth("operator"),
    )
    assert cancelled.status == "cancelled"
    events = await api.watch(run.id)
    assert events[-1].type == EventType.RUN_CANCELLED.value
    assert json.loads(events[-1].data_json)["reason"] == "not today"
    audit = [r.action for r in await _audit(api)]
    assert {"workflow.submit", "run.start", "run.cancel"} <= set(audit)


async def _audit(api: Api) -> list[Any]:
    return [record async for record in api.server.storage.audit.export()]


def _line(step: str, message: str) -> NewLogLine:
    return NewLogLine(step, 1, datetime.now(UTC), "info", message, "connector")


async def test_logs_replays_then_follows_until_the_run_finishes(api: Api) -> None:
    await api.submit(GATED)
    run = await api.start("gated")

    async def waiting() -> bool:
        got = await api.runs.Get(
            run_pb2.GetRunRequest(project=PROJECT, run_id=run.id), metadata=api.auth()
        )
        return bool(got.status == "waiting")

    await until(waiting, 60, "the approval request")
    logs = api.server.storage.logs
    await logs.append(run.id, [_line("prepare", "before the watch 1"), _line("prepare", "2")])
    request = run_pb2.LogsRequest(project=PROJECT, run_id=run.id, follow=True)
    follow = asyncio.create_task(_collect(api.runs.Logs(request, metadata=api.auth("viewer"))))
    await logs.append(run.id, [_line("pay", "while following")])
    await api.runs.Approve(
        run_pb2.DecideRequest(project=PROJECT, run_id=run.id, step="sign_off"),
        metadata=api.auth(),
    )
    followed = await follow  # ends by itself once the run has finished
    stored = await logs.read(run.id)
    assert [line.seq for line in followed] == [line.seq for line in stored]
    assert {"before the watch 1", "while following"} <= {line.message for line in followed}
    # Without follow: what is there, filtered by step and resumed after a seq.
    only_pay = run_pb2.LogsRequest(project=PROJECT, run_id=run.id, step="pay")
    assert {line.step for line in await _collect(api.runs.Logs(only_pay, metadata=api.auth()))} == {
        "pay"
    }
    later = run_pb2.LogsRequest(project=PROJECT, run_id=run.id, after_seq=2)
    assert [line.seq for line in await _collect(api.runs.Logs(later, metadata=api.auth()))] == [
        line.seq for line in stored if line.seq > 2
    ]
