"""The role matrix: every RPC of WorkflowService and RunService by every kind of caller.
Allowed callers get OK; the others the right code, with a message naming what is needed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
import pytest

from flowforge.proto.v1 import run_pb2, workflow_pb2

from .conftest import CHAIN, GATED, OTHER, PROJECT, Api, bearer, until

ROLES: Final = ("viewer", "operator", "publisher", "admin")
# Who may call what: the lowest role that may.
NEEDS: Final = {
    "workflow.Submit": "publisher",
    "workflow.Get": "viewer",
    "workflow.List": "viewer",
    "run.Start": "operator",
    "run.Get": "viewer",
    "run.List": "viewer",
    "run.Watch": "viewer",
    "run.Logs": "viewer",
    "run.Cancel": "operator",
    "run.Approve": "operator",
    "run.Reject": "operator",
    "run.Retry": "operator",
}
# Callers that are refused whatever the call, and with what.
REFUSED: Final = {
    "no token": grpc.StatusCode.UNAUTHENTICATED,
    "malformed token": grpc.StatusCode.UNAUTHENTICATED,
    "unknown token": grpc.StatusCode.UNAUTHENTICATED,
    "revoked token": grpc.StatusCode.UNAUTHENTICATED,
    "other project's admin": grpc.StatusCode.PERMISSION_DENIED,
}

Call = Callable[[tuple[tuple[str, str], ...]], Awaitable[Any]]


async def _waiting_run(api: Api) -> str:
    run = await api.start("gated")

    async def waiting() -> bool:
        got = await api.runs.Get(
            run_pb2.GetRunRequest(project=PROJECT, run_id=run.id), metadata=api.auth()
        )
        return bool(got.status == "waiting")

    await until(waiting, 60, "the approval request")
    return run.id


async def _call_for(api: Api, rpc: str, fresh_run: bool) -> Call:
    """A call of `rpc` with everything it needs in place (a fresh waiting run for the
    calls that change a run, when `fresh_run`)."""
    done = await api.finished((await api.start("chain", '{"n": 1}')).id)
    waiting = await _waiting_run(api) if fresh_run else done.id
    wf, runs = api.workflows, api.runs
    requests: dict[str, Call] = {
        "workflow.Submit": lambda md: wf.Submit(
            workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=CHAIN), metadata=md
        ),
        "workflow.Get": lambda md: wf.Get(
            workflow_pb2.GetWorkflowRequest(project=PROJECT, name="chain"), metadata=md
        ),
        "workflow.List": lambda md: wf.List(
            workflow_pb2.ListWorkflowsRequest(project=PROJECT), metadata=md
        ),
        "run.Start": lambda md: runs.Start(
            run_pb2.StartRunRequest(project=PROJECT, workflow="chain", input_json='{"n": 2}'),
            metadata=md,
        ),
        "run.Get": lambda md: runs.Get(
            run_pb2.GetRunRequest(project=PROJECT, run_id=done.id), metadata=md
        ),
        "run.List": lambda md: runs.List(run_pb2.ListRunsRequest(project=PROJECT), metadata=md),
        "run.Watch": lambda md: _drain(
            runs.Watch(run_pb2.WatchRunRequest(project=PROJECT, run_id=done.id), metadata=md)
        ),
        "run.Logs": lambda md: _drain(
            runs.Logs(run_pb2.LogsRequest(project=PROJECT, run_id=done.id), metadata=md)
        ),
        "run.Cancel": lambda md: runs.Cancel(
            run_pb2.CancelRunRequest(project=PROJECT, run_id=waiting), metadata=md
        ),
        "run.Approve": lambda md: runs.Approve(
            run_pb2.DecideRequest(project=PROJECT, run_id=waiting, step="sign_off"), metadata=md
        ),
        "run.Reject": lambda md: runs.Reject(
            run_pb2.DecideRequest(project=PROJECT, run_id=waiting, step="sign_off"), metadata=md
        ),
        "run.Retry": lambda md: runs.Retry(
            run_pb2.RetryRunRequest(project=PROJECT, run_id=done.id), metadata=md
        ),
    }
    return requests[rpc]


async def _drain(stream: Any) -> list[Any]:
    return [item async for item in stream]


def _metadata(api: Api, caller: str) -> tuple[tuple[str, str], ...]:
    if caller == "no token":
        return ()
    if caller == "malformed token":
        return bearer("not-a-token")
    if caller == "unknown token":
        return bearer("ffp_0123456789ab_bogus")
    if caller == "revoked token":
        return api.auth("revoked")
    if caller == "other project's admin":
        return api.auth("other_admin")
    return api.auth(caller)


@pytest.mark.parametrize("rpc", sorted(NEEDS))
async def test_every_rpc_by_every_caller(api: Api, rpc: str) -> None:
    await api.submit(CHAIN)
    await api.submit(GATED)
    changes_a_run = rpc in ("run.Cancel", "run.Approve", "run.Reject")
    needed = ROLES.index(NEEDS[rpc])
    outcomes: dict[str, str] = {}
    expected: dict[str, str] = {}
    for caller in [*REFUSED, *ROLES, "local"]:
        allowed = caller == "local" or (caller in ROLES and ROLES.index(caller) >= needed)
        call = await _call_for(api, rpc, fresh_run=changes_a_run and allowed)
        if caller in REFUSED:
            expected[caller] = REFUSED[caller].name
        else:
            expected[caller] = "OK" if allowed else "PERMISSION_DENIED"
        try:
            await call(_metadata(api, caller))
            outcomes[caller] = "OK"
        except grpc.aio.AioRpcError as exc:
            outcomes[caller] = exc.code().name
            if exc.code() is grpc.StatusCode.PERMISSION_DENIED and caller in ROLES:
                assert f"needs the role {NEEDS[rpc]}" in (exc.details() or "")
    assert outcomes == expected


async def test_a_run_of_another_project_is_not_found_as_if_it_did_not_exist(api: Api) -> None:
    await api.submit(CHAIN)
    run = await api.start("chain", '{"n": 3}')
    theirs = bearer(api.tokens.other_admin)
    for run_id in (run.id, "r-does-not-exist"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await api.runs.Get(run_pb2.GetRunRequest(project=OTHER, run_id=run_id), metadata=theirs)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == f"no run {run_id!r} in project {OTHER!r}"
    # The token's own project is implied when the request names none.
    listed = await api.runs.List(run_pb2.ListRunsRequest(), metadata=theirs)
    assert list(listed.runs) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.workflows.Get(workflow_pb2.GetWorkflowRequest(name="chain"), metadata=theirs)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_refusals_say_what_is_needed(api: Api) -> None:
    request = workflow_pb2.ListWorkflowsRequest(project=PROJECT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.workflows.List(request)
    assert "authorization: Bearer <token>" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.workflows.List(request, metadata=api.auth("revoked"))
    assert "was revoked" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.workflows.List(request, metadata=api.auth("other_admin"))
    assert f"belongs to project {OTHER!r}" in (caught.value.details() or "")
