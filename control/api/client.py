"""The client side of the gRPC API: one connection with the caller's token on every call.

    async with connect(server, token, workspace=root, tls_ca=None) as api:
        run = await api.runs.Start(run_pb2.StartRunRequest(project="default", workflow="w"))

`server` (else `$FLOWFORGE_SERVER`) is `host:port`, `http://host:port` or
`https://host:port`; TLS is used for `https://` or when a CA file is given. With neither,
an API server runs in this process on a free loopback port over the workspace (its
embedded defaults) and the calls carry its in-memory admin token, so the CLI follows the
same path, and the same rules, as every other client.

`RpcFailure.of(error)` turns a gRPC error into what a person reads: the status name, the
server's message, every field violation on a line of its own, and a hint.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.rpc import error_details_pb2, status_pb2

from flowforge.proto.v1 import marketplace_pb2_grpc, run_pb2_grpc, workflow_pb2_grpc

if TYPE_CHECKING:
    from flowforge.proto.v1.marketplace_pb2_grpc import MarketplaceServiceAsyncStub
    from flowforge.proto.v1.run_pb2_grpc import RunServiceAsyncStub
    from flowforge.proto.v1.workflow_pb2_grpc import WorkflowServiceAsyncStub

SERVER_ENV: Final = "FLOWFORGE_SERVER"
TOKEN_ENV: Final = "FLOWFORGE_TOKEN"
DEFAULT_PORT: Final = 50051
# As the server's default limit: a larger answer is refused with RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
_DETAILS_KEY: Final = "grpc-status-details-bin"


class ClientConfigError(Exception):
    """A server address or CA file that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Api:
    """Typed stubs over one channel; every call carries the bearer token."""

    workflows: WorkflowServiceAsyncStub
    runs: RunServiceAsyncStub
    marketplace: MarketplaceServiceAsyncStub
    address: str
    in_process: bool  # an ApiServer started by `connect` for this process


@dataclass(frozen=True)
class Target:
    """Where to connect: host:port, and whether over TLS."""

    address: str
    tls: bool


def parse_server(server: str, tls_ca: Path | None = None) -> Target:
    """`host:port`, `http://host:port` or `https://host:port` (port 50051 when left out)."""
    text = server.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if scheme not in ("", "http", "https", "grpc", "grpcs"):
        raise ClientConfigError(
            f"--server {server!r}: unknown scheme {scheme!r}; use host:port, "
            "http://host:port or https://host:port"
        )
    rest = rest.rstrip("/")
    if not rest or "/" in rest:
        raise ClientConfigError(
            f"--server {server!r}: expected host:port (e.g. 127.0.0.1:50051), with no path"
        )
    if rest.startswith("["):  # an IPv6 literal, [::1]:50051
        end = rest.find("]")
        host, after = rest[: end + 1], rest[end + 1 :]
        if end < 0 or (after and not after.startswith(":")):
            raise ClientConfigError(f"--server {server!r}: expected [IPv6]:port")
        port = after[1:]
    else:
        host, _colon, port = rest.partition(":")
        if ":" in port:
            raise ClientConfigError(
                f"--server {server!r}: put an IPv6 address in brackets, e.g. [::1]:50051"
            )
    if not host or host == "[]":
        raise ClientConfigError(f"--server {server!r}: the host is missing (e.g. 127.0.0.1:50051)")
    if port and not port.isdigit():
        raise ClientConfigError(f"--server {server!r}: the port {port!r} is not a number")
    address = f"{host}:{port or DEFAULT_PORT}"
    return Target(address, scheme in ("https", "grpcs") or tls_ca is not None)


def _with_token(details: grpc.aio.ClientCallDetails, value: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add("authorization", value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# One class per call shape: grpc.aio files an interceptor under the first shape it
# implements only, so one class for both would leave streams without the token.
class _BearerUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._value), request)


class _BearerStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._value), request)


class _BearerUpload(grpc.aio.StreamUnaryClientInterceptor):
    """For client streams: MarketplaceService.Publish."""

    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self._value), requests)


def _channel(target: Target, token: str | None, tls_ca: Path | None) -> grpc.aio.Channel:
    interceptors: list[grpc.aio.ClientInterceptor] = []
    if token:
        interceptors = [_BearerUnary(token), _BearerStream(token), _BearerUpload(token)]
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if not target.tls:
        return grpc.aio.insecure_channel(target.address, options, interceptors=interceptors)
    root: bytes | None = None
    if tls_ca is not None:
        try:
            root = tls_ca.read_bytes()
        except OSError as exc:
            raise ClientConfigError(f"--tls-ca {tls_ca}: cannot read it: {exc.strerror}") from None
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.aio.secure_channel(target.address, credentials, options, interceptors=interceptors)


def _api(channel: grpc.aio.Channel, address: str, in_process: bool) -> Api:
    return Api(
        workflows=workflow_pb2_grpc.WorkflowServiceStub(channel),
        runs=run_pb2_grpc.RunServiceStub(channel),
        marketplace=marketplace_pb2_grpc.MarketplaceServiceStub(channel),
        address=address,
        in_process=in_process,
    )


@asynccontextmanager
async def connect(
    server: str | None,
    token: str | None,
    *,
    workspace: Path,
    tls_ca: Path | None = None,
    connectors: Path | None = None,
) -> AsyncIterator[Api]:
    """A connection to `server` (else `$FLOWFORGE_SERVER`, else an in-process server over
    `workspace`; `connectors` are its development connector folders). `token` defaults
    to `$FLOWFORGE_TOKEN`; the in-process server is called with its own admin token."""
    server = server or os.environ.get(SERVER_ENV) or None
    if server is None:
        async with _in_process(workspace, connectors) as api:
            yield api
        return
    if connectors is not None:
        raise ClientConfigError(
            "--connectors works only with the in-process server (no --server, no "
            f"${SERVER_ENV}); a server gets its development connectors when it starts"
        )
    target = parse_server(server, tls_ca)
    channel = _channel(target, token or os.environ.get(TOKEN_ENV) or None, tls_ca)
    try:
        yield _api(channel, target.address, in_process=False)
    finally:
        await channel.close()


@asynccontextmanager
async def _in_process(workspace: Path, connectors: Path | None) -> AsyncIterator[Api]:
    # Imported here: a client of a remote server never loads the scheduler and sandbox.
    from flowforge.control.api.server import ApiServer, ServerConfig

    config = ServerConfig(workspace=workspace, listen="127.0.0.1:0", connectors=connectors)
    server = await ApiServer.open(config)
    try:
        channel = _channel(Target(server.address, tls=False), server.local_token, None)
        try:
            yield _api(channel, server.address, in_process=True)
        finally:
            await channel.close()
    finally:
        await server.close()


# --- errors -------------------------------------------------------------------------------

EXIT_INVALID: Final = 2
EXIT_FAILED: Final = 1

_HINTS: Final = {
    grpc.StatusCode.UNAUTHENTICATED: (
        f"set --token or ${TOKEN_ENV} (an admin makes one: flowforge token create "
        "--project P --role viewer|operator|publisher|admin)"
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        "use a token with that role in that project (flowforge token create --project P --role R)"
    ),
    grpc.StatusCode.UNAVAILABLE: (
        "is the server running and reachable at {address}? (flowforge server --listen ADDR; "
        f"without --server and ${SERVER_ENV} the CLI runs one in-process)"
    ),
    grpc.StatusCode.NOT_FOUND: "check the name or id (flowforge run list, flowforge workflow list)",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the message is over the size limit; send less at once",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the server did not answer in time; try again",
    grpc.StatusCode.FAILED_PRECONDITION: "",
    grpc.StatusCode.UNIMPLEMENTED: "the server does not offer this call; is it an older version?",
}


@dataclass(frozen=True)
class RpcFailure:
    """A failed call as the CLI reports it."""

    code: grpc.StatusCode
    message: str
    violations: Sequence[tuple[str, str]]  # (field, description)
    hint: str

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError, address: str = "") -> RpcFailure:
        code = error.code()
        hint = _HINTS.get(code, "").replace("{address}", address or "the address given")
        return cls(code, error.details() or "", _violations(error), hint)

    @property
    def exit_code(self) -> int:
        return EXIT_INVALID if self.code is grpc.StatusCode.INVALID_ARGUMENT else EXIT_FAILED

    @property
    def kind(self) -> str:
        return self.code.name.lower().replace("_", "-")

    def text(self) -> str:
        """`CODE: message`, then one line per violation, then the hint. With violations
        only the message's first line is kept: the rest repeats them (a WorkflowInvalid's
        text lists its problems too)."""
        message = self.message.splitlines()[0] if self.violations and self.message else self.message
        lines = [f"{self.code.name}: {message}"]
        lines += [f"  {field}: {what}" if field else f"  {what}" for field, what in self.violations]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def _violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """Field violations and failed preconditions from the rich status in the trailers."""
    raw = next((v for k, v in (error.trailing_metadata() or ()) if k == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return []
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except Exception:  # a damaged detail must not hide the error itself
        return []
    found: list[tuple[str, str]] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(bad):  # Unpack says whether the detail is of that type
            found += [(v.field, v.description) for v in bad.field_violations]
        elif detail.Unpack(failure):
            found += [(v.subject, v.description) for v in failure.violations]
    return found


__all__ = [
    "SERVER_ENV",
    "TOKEN_ENV",
    "Api",
    "ClientConfigError",
    "RpcFailure",
    "Target",
    "connect",
    "parse_server",
]
