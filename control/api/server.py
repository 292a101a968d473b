"""The gRPC API server: `flowforge.v1` WorkflowService, RunService and MarketplaceService
over one engine, with health checking, reflection, bearer-token auth, TLS and message
size limits.

    server = await ApiServer.open(ServerConfig(workspace=Path("ws"), listen="127.0.0.1:0"))
    print(server.address, server.local_token)
    ...
    await server.close()
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from flowforge.control.scheduler import Scheduler
from flowforge.control.storage import Storage
from flowforge.control.triggers import TriggerManager, host_start_run
from flowforge.marketplace.db import REGISTRY_ENV
from flowforge.marketplace.db import default_url as default_registry_url
from flowforge.marketplace.service import Registry
from flowforge.proto.v1 import marketplace_pb2, run_pb2, workflow_pb2
from flowforge.runtime.bus import BusSettings
from flowforge.runtime.bus.nats import DEFAULT_PREFIX
from flowforge.runtime.telemetry.grpc import TraceContextInterceptor

from .auth import Authority, new_local_token
from .engines import Engine, open_engine
from .marketplace_service import add_marketplace_service
from .run_service import add_run_service
from .workflow_service import add_workflow_service

DEFAULT_LISTEN: Final = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
REGISTRY_BLOBS_ENV: Final = "FLOWFORGE_REGISTRY_BLOBS"  # as `flowforge marketplace` reads it
SERVICE_NAMES: Final = {
    "workflow": workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    "run": run_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    "marketplace": marketplace_pb2.DESCRIPTOR.services_by_name["MarketplaceService"].full_name,
}
_ALL_SERVICES: Final = frozenset(SERVICE_NAMES)


class ServerError(Exception):
    """The server cannot start as configured; the message says what to change."""


@dataclass
class ServerConfig:
    """How to serve. `listen` "127.0.0.1:0" picks a free port (see `ApiServer.address`);
    `nats` switches from the embedded engine to NATS JetStream; `connectors` (development)
    resolves `uses` against local connector folders built unsigned."""

    workspace: Path
    database: str | None = None
    nats: str | None = None
    listen: str = DEFAULT_LISTEN
    with_worker: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    services: frozenset[str] = field(default_factory=lambda: _ALL_SERVICES)
    registry: str | None = None
    connectors: Path | None = None
    # Not in the contract's minimum: where the registry keeps blobs, the NATS prefix
    # (tests use unique ones) and the bus's delivery policy.
    registry_blobs: Path | None = None
    nats_prefix: str = DEFAULT_PREFIX
    bus_settings: BusSettings | None = None
    # Fire the submitted workflows' cron, webhook and NATS triggers. Only `flowforge
    # server` sets it: the in-process server behind a CLI command must never fire cron.
    triggers: bool = False
    webhook_listen: str | None = None

    def check(self) -> None:
        unknown = self.services - _ALL_SERVICES
        if unknown:
            raise ServerError(
                f"unknown services {sorted(unknown)}: choose from {sorted(_ALL_SERVICES)}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServerError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")
        if self.max_message_bytes < 1024:
            raise ServerError(f"max_message_bytes {self.max_message_bytes} is below 1 KiB")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ServerError(f"listen address {self.listen!r} is not HOST:PORT")


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        chain = config.tls_cert.read_bytes()
        key = config.tls_key.read_bytes()
    except OSError as exc:
        raise ServerError(f"cannot read the TLS files: {exc}") from exc
    return grpc.ssl_server_credentials([(key, chain)])


async def _open_registry(config: ServerConfig) -> Registry:
    root = config.workspace / "registry"
    url = config.registry or os.environ.get(REGISTRY_ENV) or default_registry_url(root)
    blobs = config.registry_blobs or Path(os.environ.get(REGISTRY_BLOBS_ENV) or root / "blobs")
    return await Registry.open(url, blobs)


class ApiServer:
    """A bound, serving API server; `close()` stops it and everything it opened."""

    def __init__(
        self,
        config: ServerConfig,
        server: grpc.aio.Server,
        engine: Engine,
        registry: Registry | None,
        authority: Authority,
        health: HealthServicer,
        address: str,
        local_token: str,
        triggers: TriggerManager | None = None,
    ) -> None:
        self.config = config
        self.triggers = triggers
        self.server = server
        self.engine = engine
        self.registry = registry
        self.authority = authority
        self.health = health
        self.address = address
        self.local_token = local_token
        self.closed = False

    @property
    def storage(self) -> Storage:
        return self.engine.storage

    @property
    def scheduler(self) -> Scheduler:
        return self.engine.scheduler

    @classmethod
    async def open(cls, config: ServerConfig) -> ApiServer:
        config.check()
        credentials = _credentials(config)
        engine = await open_engine(
            config.workspace,
            database=config.database,
            nats=config.nats,
            nats_prefix=config.nats_prefix,
            bus_settings=config.bus_settings,
            with_worker=config.with_worker,
            dev_connectors=config.connectors,
        )
        registry: Registry | None = None
        try:
            if "marketplace" in config.services:
                registry = await _open_registry(config)
            return await cls._serve(config, credentials, engine, registry)
        except BaseException:
            if registry is not None:
                await registry.close()
            await engine.close()
            raise

    @classmethod
    async def _serve(
        cls,
        config: ServerConfig,
        credentials: grpc.ServerCredentials | None,
        engine: Engine,
        registry: Registry | None,
    ) -> ApiServer:
        local_token = new_local_token()
        authority = Authority(engine.storage.tokens, local_token)
        limit = config.max_message_bytes
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        server = grpc.aio.server(options=options, interceptors=[TraceContextInterceptor()])
        names = [SERVICE_NAMES[s] for s in sorted(config.services)]
        triggers: TriggerManager | None = None
        if config.triggers:
            triggers = TriggerManager(
                engine.storage,
                host_start_run(engine),
                nats_url=config.nats,
                webhook_listen=config.webhook_listen,
                secrets=engine.scheduler.secrets,
            )
        if "workflow" in config.services:
            on_submit = triggers.refresh if triggers is not None else None
            add_workflow_service(server, engine, authority, on_submit=on_submit)
        if "run" in config.services:
            add_run_service(server, engine, authority)
        if registry is not None:
            add_marketplace_service(server, registry, authority, engine.storage)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable_server_reflection([*names, health_name, reflection.SERVICE_NAME], server)
        if credentials is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, credentials)
        if port == 0:
            raise ServerError(
                f"cannot listen on {config.listen} (in use, or not an address of this host); "
                "choose another with --listen HOST:PORT (port 0 picks a free one)"
            )
        await server.start()
        for name in ["", *names]:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        host = config.listen.rpartition(":")[0]
        api = cls(
            config,
            server,
            engine,
            registry,
            authority,
            health,
            f"{host}:{port}",
            local_token,
            triggers,
        )
        if triggers is not None:
            try:
                await triggers.start()
            except BaseException:
                await server.stop(None)
                raise
        return api

    async def close(self, grace: float = 2.0) -> None:
        """Stop taking calls, give those in flight `grace` seconds, then close the engine."""
        if self.closed:
            return
        self.closed = True
        await self.health.enter_graceful_shutdown()
        if self.triggers is not None:
            await self.triggers.stop()
        await self.server.stop(grace)
        try:
            await self.engine.close()
        finally:
            if self.registry is not None:
                await self.registry.close()

    async def wait(self) -> None:
        """Until the server stops."""
        await self.server.wait_for_termination()

    async def __aenter__(self) -> ApiServer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


__all__ = ["DEFAULT_LISTEN", "SERVICE_NAMES", "ApiServer", "ServerConfig", "ServerError"]
