"""`flowforge server`: serve the gRPC API (`flowforge.v1`) until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import click

from flowforge.control.api.server import DEFAULT_LISTEN, ApiServer, ServerConfig, ServerError
from flowforge.control.workspace import workspace_dir
from flowforge.marketplace.db import DatabaseError
from flowforge.runtime import telemetry
from flowforge.runtime.bus import BusError

from .options import (
    fail,
    log_format_option,
    nats_prefix_option,
    output_option,
    tls_server_options,
    workspace_option,
)


async def serve_until_signalled(config: ServerConfig, output: str) -> None:
    """Open the server, print where it listens, serve until SIGINT or SIGTERM (used by
    `flowforge server` and `flowforge marketplace serve`)."""
    server = await ApiServer.open(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        mode = "NATS " + config.nats if config.nats else "embedded"
        tls = "TLS" if config.tls_cert else "plaintext"
        webhooks = server.triggers.webhook_address if server.triggers is not None else None
        if output == "json":
            doc = {
                "address": server.address,
                "mode": mode,
                "tls": tls == "TLS",
                "webhooks": webhooks,
            }
            click.echo(json.dumps(doc))
        else:
            click.echo(f"flowforge server listening on {server.address} ({mode}, {tls})")
            if webhooks:
                click.echo(f"webhook triggers on http://{webhooks}")
        for problem in server.triggers.problems if server.triggers is not None else ():
            click.echo(f"warning: trigger not served: {problem}", err=True)
        await stop.wait()
        click.echo("stopping: finishing the calls in flight", err=True)
    finally:
        await server.close(grace=5.0)


@click.command()
@click.option(
    "--db",
    "database",
    default=None,
    help="Database URL. Default: $FLOWFORGE_DATABASE, else <workspace>/flowforge.db.",
)
@click.option(
    "--nats",
    default=None,
    help="NATS JetStream URL (e.g. nats://127.0.0.1:4222). Default: the in-process bus.",
)
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    help="HOST:PORT to listen on (port 0 picks a free one).",
)
@nats_prefix_option
@click.option(
    "--with-worker/--no-worker",
    default=True,
    show_default=True,
    help="With --nats: also run steps in this process (else `flowforge worker`s do).",
)
@tls_server_options
@click.option(
    "--connectors",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Development: resolve `uses` against local connector folders (built unsigned).",
)
@click.option(
    "--max-message-mb",
    type=click.IntRange(min=1, max=1024),
    default=8,
    show_default=True,
    help="Largest request or response, in MiB.",
)
@click.option(
    "--registry",
    default=None,
    help="Registry database URL. Default: $FLOWFORGE_REGISTRY, else the workspace's.",
)
@click.option(
    "--webhook-listen",
    default=None,
    metavar="HOST:PORT",
    help="Serve the workflows' webhook triggers here (port 0 picks a free one). Cron and "
    "NATS-subject triggers fire whenever the server runs.",
)
@log_format_option
@output_option
@workspace_option
def server(
    database: str | None,
    nats: str | None,
    nats_prefix: str,
    listen: str,
    with_worker: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    connectors: Path | None,
    max_message_mb: int,
    registry: str | None,
    webhook_listen: str | None,
    log_format: telemetry.LogFormat,
    output: str,
    workspace: Path | None,
) -> None:
    """Serve the gRPC API: WorkflowService, RunService and MarketplaceService, with
    health checking and reflection. Every call needs a bearer token (`flowforge token
    create`). Prints the address, then serves until SIGINT or SIGTERM, when it stops
    taking calls and gives those in flight 5 seconds.

    \b
    Examples:
      flowforge server --listen 0.0.0.0:50051
      flowforge server --db postgresql+asyncpg://ff@db/ff --nats nats://nats:4222 --no-worker
      flowforge server --nats nats://nats:4222 --prefix staging   # beside another on one NATS
      flowforge server --tls-cert server.pem --tls-key server.key
    """
    config = ServerConfig(
        workspace=workspace_dir(workspace),
        database=database,
        nats=nats,
        nats_prefix=nats_prefix,
        listen=listen,
        with_worker=with_worker,
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_message_bytes=max_message_mb * 1024 * 1024,
        registry=registry,
        connectors=connectors,
        triggers=True,
        webhook_listen=webhook_listen,
    )
    try:
        config.check()
    except ServerError as exc:
        fail(str(exc), as_json=output == "json", kind="config")
    telemetry.setup_logging(log_format)
    try:
        telemetry.configure("flowforge-server")
    except telemetry.TelemetryConfigError as exc:
        fail(str(exc), as_json=output == "json", kind="config")
    try:
        asyncio.run(serve_until_signalled(config, output))
    except (ServerError, BusError, DatabaseError, OSError) as exc:
        fail(str(exc), code=1, as_json=output == "json", kind="server")
