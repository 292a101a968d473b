"""`flowforge worker`: run connector steps taken from NATS JetStream."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from flowforge.control.workspace import config_dir, workspace_dir
from flowforge.marketplace.install import PACKAGES_DIR
from flowforge.runtime import sealing, telemetry
from flowforge.runtime.bus import BusError, BusSettings, MessageError
from flowforge.runtime.bus.messages import check_token
from flowforge.runtime.bus.nats import NatsBus
from flowforge.runtime.sandbox import Sandbox
from flowforge.runtime.worker import DirectoryPackageSource, Unseal, Worker

from .options import (
    fail,
    log_format_option,
    nats_prefix_option,
    open_trust_store,
    workspace_option,
)

POOL_KEYS_DIR = "pools"


def _unseal(keys: Path, pool: str) -> Unseal:
    keypair = sealing.pool_keypair(keys, pool)

    def unseal(sealed: str) -> dict[str, str]:
        return sealing.open(sealed, keypair.private)

    return unseal


async def _serve(worker: Worker, bus: NatsBus) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.drain)
    try:
        await worker.run()
    finally:
        await bus.close()


@click.command()
@click.option("--nats", "url", required=True, help="NATS server URL, e.g. nats://127.0.0.1:4222.")
@click.option("--pool", default="default", show_default=True, help="The pool to take tasks of.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Steps run at once.",
)
@nats_prefix_option
@click.option(
    "--ack-wait",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds before a task not acknowledged goes to another worker.",
)
@click.option(
    "--max-deliver",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Deliveries of a task before it is dead-lettered.",
)
@click.option(
    "--pool-keys",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of pool key pairs that open sealed secrets. "
    f"Default: <config dir>/{POOL_KEYS_DIR}.",
)
@click.option(
    "--allow-unsigned-dev",
    is_flag=True,
    help="Also run unsigned packages (development only; results say so).",
)
@log_format_option
@workspace_option
def worker(
    url: str,
    pool: str,
    concurrency: int,
    nats_prefix: str,
    ack_wait: float,
    max_deliver: int,
    pool_keys: Path | None,
    allow_unsigned_dev: bool,
    log_format: telemetry.LogFormat,
    workspace: Path | None,
) -> None:
    """Run connector steps of POOL taken from NATS JetStream, until SIGTERM.

    Packages come from the workspace's packages/ folder (what `flowforge marketplace
    install` fills) and are verified against its trust store. On SIGTERM or Ctrl-C the
    worker drains: it finishes the steps it holds and takes nothing new.

    \b
    Example:
      flowforge worker --nats nats://127.0.0.1:4222 --pool default --concurrency 4
      OTEL_TRACES_EXPORTER=otlp flowforge worker --nats nats://ff:4222 --log-format json
    """
    telemetry.setup_logging(log_format)
    try:
        telemetry.configure("flowforge-worker")
    except telemetry.TelemetryConfigError as exc:
        fail(str(exc))
    try:
        check_token("pool", pool)
    except MessageError as exc:
        fail(str(exc))
    root = workspace_dir(workspace)
    trust = open_trust_store(workspace)
    try:
        unseal = _unseal(pool_keys or config_dir() / POOL_KEYS_DIR, pool)
    except sealing.SealError as exc:
        fail(f"pool key: {exc}")
    settings = BusSettings(ack_wait=ack_wait, max_deliver=max_deliver)

    async def main() -> None:
        bus = await NatsBus.connect(
            url, prefix=nats_prefix, settings=settings, name="flowforge-worker"
        )
        sandbox = Sandbox(max_workers=concurrency)
        try:
            runner = Worker(
                bus,
                sandbox,
                DirectoryPackageSource(root / PACKAGES_DIR),
                pool,
                concurrency,
                trust=trust,
                unseal=unseal,
                allow_unsigned_dev=allow_unsigned_dev,
            )
            await _serve(runner, bus)
        finally:
            sandbox.close()

    try:
        asyncio.run(main())
    except BusError as exc:
        fail(str(exc), code=1)
