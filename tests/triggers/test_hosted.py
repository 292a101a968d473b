"""Triggers hosted by the API server (`flowforge server --webhook-listen`): a workflow
submitted through WorkflowService is served at once, and a POST starts a real run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc

from flowforge.control.api.server import ApiServer, ServerConfig
from flowforge.control.storage import RunStatus
from flowforge.proto.v1 import workflow_pb2, workflow_pb2_grpc
from tests.control.api.conftest import CONNECTORS, bearer

HOOKED = """
name: hooked
triggers:
  - type: webhook
    path: /hooks/orders
steps:
  total:
    uses: flowforge/json-transform@^0.1
    with: {expression: "amount"}
    input: {amount: "${{ inputs.amount }}"}
"""


async def test_a_submitted_webhook_is_served_and_starts_a_run(tmp_path: Path) -> None:
    config = ServerConfig(
        workspace=tmp_path / "workspace",
        listen="127.0.0.1:0",
        connectors=CONNECTORS,
        services=frozenset({"workflow", "run"}),
        triggers=True,
        webhook_listen="127.0.0.1:0",
    )
    server = await ApiServer.open(config)
    try:
        assert server.triggers is not None
        hooks = server.triggers.webhook_address
        async with aiohttp.ClientSession() as http:
            url = f"http://{hooks}/hooks/orders"
            async with http.post(url, json={"amount": 7}) as answer:
                assert answer.status == 404  # nothing submitted yet
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
                request = workflow_pb2.SubmitWorkflowRequest(project="default", yaml=HOOKED)
                await stub.Submit(request, metadata=bearer(server.local_token), timeout=300)
            # The submit refreshed the triggers: no waiting for the periodic refresh.
            async with http.post(url, json={"amount": 7}) as answer:
                assert answer.status == 202, await answer.text()
                run_id = (await answer.json())["run_id"]
        result = await asyncio.wait_for(server.scheduler.wait(run_id), 60)
        assert result.state.status is RunStatus.SUCCEEDED, result.state.error
        assert result.state.outputs == {"total": {"result": 7}}
        [started, *_] = await server.storage.events.read(run_id)
        assert started.data["trigger"] == {"type": "webhook", "path": "/hooks/orders"}
    finally:
        await server.close()
