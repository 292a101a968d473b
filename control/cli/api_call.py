"""The options every API-client command shares, and running one job against the API.

    @some_group.command()
    @client_options
    def get(run_id: str, client: ClientOptions) -> None:
        run = call_api(client, lambda api: api.runs.Get(...))

`--server` (or $FLOWFORGE_SERVER), `--token` (or $FLOWFORGE_TOKEN), `--tls-ca`,
`--project` and `--output table|json|yaml` arrive bundled as one `ClientOptions`. A
failed call ends the command with one message (status, violations, hint) and exit code 2
for INVALID_ARGUMENT, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click
import grpc

from flowforge.control.api.client import (
    SERVER_ENV,
    TOKEN_ENV,
    Api,
    ClientConfigError,
    RpcFailure,
    connect,
)
from flowforge.control.api.server import ServerError
from flowforge.control.scheduler import CatalogError, SchedulerError
from flowforge.control.storage import StorageError
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError

from .options import EXIT_REFUSED, workspace_option
from .output import fail_as, rendered_output_option

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED: Final = 130


@dataclass(frozen=True)
class ClientOptions:
    server: str | None
    token: str | None
    tls_ca: Path | None
    project: str
    output: str
    workspace: Path | None
    connectors: Path | None = None  # development folders for the in-process server

    @property
    def root(self) -> Path:
        return workspace_dir(self.workspace)


def client_options(func: F) -> F:
    """Add the client options; the command receives them as `client: ClientOptions`."""

    @functools.wraps(func)
    def command(
        *args: Any,
        server: str | None,
        token: str | None,
        tls_ca: Path | None,
        project: str,
        output: str,
        workspace: Path | None,
        **kwargs: Any,
    ) -> Any:
        client = ClientOptions(server, token, tls_ca, project, output, workspace)
        return func(*args, client=client, **kwargs)

    decorated: Any = command
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return rendered_output_option(workspace_option(decorated))  # type: ignore[no-any-return]


_OPTIONS = [
    click.option(
        "--server",
        envvar=SERVER_ENV,
        default=None,
        metavar="URL",
        help=f"API server: host:port, http://host:port or https://host:port (${SERVER_ENV}). "
        "Default: a server in this process over the workspace.",
    ),
    click.option(
        "--token",
        envvar=TOKEN_ENV,
        default=None,
        help=f"Bearer token for the server (${TOKEN_ENV}); `flowforge token create` makes one.",
    ),
    click.option(
        "--tls-ca",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="PEM file of the CA that signed the server's certificate (implies TLS).",
    ),
    click.option("--project", default="default", show_default=True, help="The project."),
]


def call_api(client: ClientOptions, job: Callable[[Api], Awaitable[T]]) -> T:
    """Connect, run `job`, disconnect; any failure ends the command with its message."""

    async def go() -> T:
        async with connect(
            client.server,
            client.token,
            workspace=client.root,
            tls_ca=client.tls_ca,
            connectors=client.connectors,
        ) as api:
            try:
                return await job(api)
            except grpc.aio.AioRpcError as exc:
                rpc_failed(client, RpcFailure.of(exc, api.address))

    try:
        return asyncio.run(go())
    except ClientConfigError as exc:
        fail_as(client.output, str(exc), kind="config")
    except (ServerError, SchedulerError, CatalogError, StorageError, DatabaseError, OSError) as exc:
        # The in-process server could not open the workspace's database or folders.
        fail_as(client.output, f"the in-process server: {exc}", code=EXIT_REFUSED, kind="server")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None


def rpc_failed(client: ClientOptions, failure: RpcFailure) -> NoReturn:
    fail_as(client.output, failure.text(), code=failure.exit_code, kind=failure.kind)


__all__ = ["ClientOptions", "call_api", "client_options", "rpc_failed"]
