"""A real API server on a free port with the first-party connectors as development
connectors, tokens of every role, and real grpc.aio clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2

from flowforge.control.api.server import ApiServer, ServerConfig
from flowforge.proto.v1 import run_pb2, run_pb2_grpc, workflow_pb2, workflow_pb2_grpc

if TYPE_CHECKING:
    from flowforge.proto.v1.run_pb2_grpc import RunServiceAsyncStub
    from flowforge.proto.v1.workflow_pb2_grpc import WorkflowServiceAsyncStub

ROOT: Final = Path(__file__).parents[3]
CONNECTORS: Final = ROOT / "connectors"
PROJECT: Final = "acme"
OTHER: Final = "globex"

# Three quick json-transform steps in a chain: the 3-step trivial workflow.
CHAIN: Final = """
name: chain
inputs:
  type: object
  properties:
    n: {type: integer}
steps:
  first:
    uses: flowforge/json-transform@^0.1
    with: {expression: "n"}
    input: {n: "${{ inputs.n }}"}
  second:
    uses: flowforge/json-transform@^0.1
    with: {expression: "value"}
    input: {value: "${{ steps.first.output.result }}"}
  third:
    uses: flowforge/json-transform@^0.1
    with: {expression: "value"}
    input: {value: "${{ steps.second.output.result }}"}
"""

# A connector step, then an approval, then another connector step.
GATED: Final = """
name: gated
steps:
  prepare:
    uses: flowforge/json-transform@^0.1
    with: {expression: "amount"}
    input: {amount: 5}
  sign_off:
    type: approval
    message: "Pay ${{ steps.prepare.output.result }}?"
  pay:
    uses: flowforge/json-transform@^0.1
    with: {expression: "approved"}
    input: {approved: "${{ steps.sign_off.output.approved }}"}
"""


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Tokens:
    """Tokens of PROJECT by role, plus one of OTHER, one revoked, and the local one."""

    viewer: str
    operator: str
    publisher: str
    admin: str
    other_admin: str
    revoked: str
    local: str

    def of(self, who: str) -> str:
        return str(getattr(self, who))


@dataclass
class Api:
    server: ApiServer
    channel: grpc.aio.Channel
    workflows: WorkflowServiceAsyncStub
    runs: RunServiceAsyncStub
    tokens: Tokens

    def auth(self, who: str = "admin") -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens.of(who))

    async def submit(self, yaml: str, who: str = "admin") -> workflow_pb2.Workflow:
        request = workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=yaml)
        response = await self.workflows.Submit(request, metadata=self.auth(who))
        return response.workflow

    async def start(self, workflow: str, input_json: str = "{}") -> run_pb2.Run:
        request = run_pb2.StartRunRequest(project=PROJECT, workflow=workflow, input_json=input_json)
        run: run_pb2.Run = await self.runs.Start(request, metadata=self.auth())
        return run

    async def watch(self, run_id: str, after_seq: int = 0) -> list[run_pb2.RunEvent]:
        request = run_pb2.WatchRunRequest(project=PROJECT, run_id=run_id, after_seq=after_seq)
        return [event async for event in self.runs.Watch(request, metadata=self.auth())]

    async def finished(self, run_id: str) -> run_pb2.Run:
        await self.watch(run_id)
        request = run_pb2.GetRunRequest(project=PROJECT, run_id=run_id)
        run: run_pb2.Run = await self.runs.Get(request, metadata=self.auth())
        return run


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("FLOWFORGE_DATABASE", "FLOWFORGE_REGISTRY", "FLOWFORGE_REGISTRY_BLOBS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "workspace"


async def make_tokens(server: ApiServer) -> Tokens:
    store = server.storage.tokens
    made = {}
    for role in ("viewer", "operator", "publisher", "admin"):
        made[role] = (await store.create(project=PROJECT, role=role, name=f"test-{role}"))[1]
    other = (await store.create(project=OTHER, role="admin", name="other"))[1]
    record, revoked = await store.create(project=PROJECT, role="admin", name="gone")
    await store.revoke(record.id)
    return Tokens(**made, other_admin=other, revoked=revoked, local=server.local_token)


@pytest.fixture
async def api(workspace: Path) -> AsyncIterator[Api]:
    config = ServerConfig(workspace=workspace, listen="127.0.0.1:0", connectors=CONNECTORS)
    server = await ApiServer.open(config)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield Api(
            server,
            channel,
            workflow_pb2_grpc.WorkflowServiceStub(channel),
            run_pb2_grpc.RunServiceStub(channel),
            await make_tokens(server),
        )
    finally:
        await channel.close()
        await server.close()


def rich_details(error: grpc.aio.AioRpcError) -> list[Any]:
    """The google.rpc detail messages of a failed call, unpacked."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert isinstance(raw, bytes), "the status carries no details"
    status = status_pb2.Status.FromString(raw)
    assert status.code == error.code().value[0]
    found: list[Any] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.ResourceInfo,
            error_details_pb2.PreconditionFailure,
        ):
            if detail.type_url.endswith(f"/{kind.DESCRIPTOR.full_name}"):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


def _health_check(channel: grpc.aio.Channel | grpc.Channel) -> Any:
    # The grpc_health stubs' HealthStub declares no methods; call it by its path.
    return channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


async def health_status(channel: grpc.aio.Channel, service: str = "", timeout: float = 10) -> int:
    reply = await _health_check(channel)(
        health_pb2.HealthCheckRequest(service=service), timeout=timeout
    )
    return int(reply.status)


def health_status_sync(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        reply = _health_check(channel)(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return int(reply.status)


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll `check` until it holds (a condition, not a timing assertion)."""
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
