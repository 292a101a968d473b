"""Malformed and oversized requests are refused with the right code and details a client
can act on (google.rpc BadRequest, ResourceInfo, PreconditionFailure)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from flowforge.control.api.server import ApiServer, ServerConfig
from flowforge.proto.v1 import run_pb2, workflow_pb2, workflow_pb2_grpc

from .conftest import CHAIN, CONNECTORS, PROJECT, Api, bearer, rich_details

BROKEN = """
name: broken
steps:
  a:
    uses: flowforge/json-transform@^0.1
    with: {expression: "n"}
    needs: [nowhere]
  b:
    uses: flowforge/json-transform@^0.1
    with: {nonsense: 1}
"""


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_an_invalid_workflow_lists_every_problem_as_field_violations(api: Api) -> None:
    request = workflow_pb2.SubmitWorkflowRequest(
        project=PROJECT, yaml=BROKEN, source_name="broken.yaml"
    )
    error = await _refused(api.workflows.Submit(request, metadata=api.auth()))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = rich_details(error)
    assert isinstance(bad, error_details_pb2.BadRequest)
    fields = {v.field: v.description for v in bad.field_violations}
    assert "steps.a.needs" in fields or "steps.a.needs[0]" in fields
    assert any(f.startswith("steps.b") for f in fields)
    # Each description says where: file:line:column.
    assert all(d.startswith("broken.yaml:") for d in fields.values()), fields
    assert fields[next(f for f in fields if f.startswith("steps.a"))].startswith("broken.yaml:7:")


async def test_yaml_that_does_not_parse_is_invalid_argument(api: Api) -> None:
    request = workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml="name: [unclosed\n")
    error = await _refused(api.workflows.Submit(request, metadata=api.auth()))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[0].field_violations


async def test_bad_json_and_bad_input_are_invalid_argument_on_input_json(api: Api) -> None:
    await api.submit(CHAIN)
    for text, needle in (('{"n": ', "not valid JSON"), ('{"n": "seven"}', "")):
        request = run_pb2.StartRunRequest(project=PROJECT, workflow="chain", input_json=text)
        error = await _refused(api.runs.Start(request, metadata=api.auth()))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        (bad,) = rich_details(error)
        assert [v.field for v in bad.field_violations] == ["input_json"]
        assert needle in bad.field_violations[0].description


async def test_unknown_things_are_not_found_with_resource_info(api: Api) -> None:
    error = await _refused(
        api.runs.Get(run_pb2.GetRunRequest(project=PROJECT, run_id="r-nope"), metadata=api.auth())
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    (info,) = rich_details(error)
    assert (info.resource_type, info.resource_name) == ("run", "r-nope")
    start = run_pb2.StartRunRequest(project=PROJECT, workflow="missing")
    error = await _refused(api.runs.Start(start, metadata=api.auth()))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    await api.submit(CHAIN)
    get = workflow_pb2.GetWorkflowRequest(project=PROJECT, name="chain", version="deadbeef00")
    error = await _refused(api.workflows.Get(get, metadata=api.auth()))
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_cancelling_a_finished_run_is_a_failed_precondition(api: Api) -> None:
    await api.submit(CHAIN)
    run = await api.finished((await api.start("chain", '{"n": 1}')).id)
    cancel = run_pb2.CancelRunRequest(project=PROJECT, run_id=run.id)
    error = await _refused(api.runs.Cancel(cancel, metadata=api.auth()))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    (failure,) = rich_details(error)
    assert failure.violations[0].type == "run-finished"
    assert "already finished (succeeded)" in (error.details() or "")


async def test_a_bad_page_token_and_page_size_are_invalid_argument(api: Api) -> None:
    for request in (
        run_pb2.ListRunsRequest(project=PROJECT, page_token="garbage"),
        run_pb2.ListRunsRequest(project=PROJECT, page_size=-1),
        run_pb2.ListRunsRequest(project=PROJECT, status=["sleeping"]),
    ):
        error = await _refused(api.runs.List(request, metadata=api.auth()))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert rich_details(error)[0].field_violations


async def test_an_oversized_request_is_resource_exhausted(workspace: Path) -> None:
    config = ServerConfig(
        workspace=workspace,
        listen="127.0.0.1:0",
        connectors=CONNECTORS,
        max_message_bytes=64 * 1024,
        services=frozenset({"workflow", "run"}),
    )
    server = await ApiServer.open(config)
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        big = "# " + "x" * (128 * 1024) + "\n" + CHAIN
        request = workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=big)
        error = await _refused(stub.Submit(request, metadata=bearer(server.local_token)))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        # grpc's own message names both sizes.
        assert str(64 * 1024) in (error.details() or ""), error.details()
        # A request within the limit still goes through.
        small = workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=CHAIN)
        done = await stub.Submit(small, metadata=bearer(server.local_token))
        assert done.workflow.name == "chain"
