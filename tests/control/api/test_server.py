"""The server as a whole: health, reflection (as grpcurl uses it), TLS, `flowforge server`
in a process of its own, `flowforge token`, and PostgreSQL + NATS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from flowforge.control.api.server import SERVICE_NAMES, ApiServer, ServerConfig
from flowforge.proto.v1 import run_pb2, run_pb2_grpc, workflow_pb2, workflow_pb2_grpc
from tests.cli import run_cli
from tests.pg import fresh_database
from tests.runtime.bus.conftest import SETTINGS, delete_streams, new_prefix, open_bus

from .conftest import (
    CHAIN,
    CONNECTORS,
    PROJECT,
    Api,
    bearer,
    health_status,
    health_status_sync,
)

HEALTH = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_health_says_serving_for_each_service(api: Api) -> None:
    for name in ["", *SERVICE_NAMES.values()]:
        assert await health_status(api.channel, name) == SERVING, name


def _reflected_services(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        return list(ProtoReflectionDescriptorDatabase(channel).get_services())


async def test_reflection_lists_the_three_services_and_health_as_grpcurl_sees_them(
    api: Api,
) -> None:
    services = await asyncio.to_thread(_reflected_services, api.server.address)
    assert set(SERVICE_NAMES.values()) | {HEALTH} <= set(services)
    assert set(SERVICE_NAMES.values()) == {
        "flowforge.v1.WorkflowService",
        "flowforge.v1.RunService",
        "flowforge.v1.MarketplaceService",
    }


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_round_trip_with_a_self_signed_certificate(
    workspace: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    config = ServerConfig(
        workspace=workspace,
        listen="127.0.0.1:0",
        connectors=CONNECTORS,
        tls_cert=cert,
        tls_key=key,
        services=frozenset({"workflow", "run"}),
    )
    server = await ApiServer.open(config)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    async with server, grpc.aio.secure_channel(server.address, credentials) as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        request = workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=CHAIN)
        reply = await stub.Submit(request, metadata=bearer(server.local_token))
        assert reply.workflow.name == "chain" and reply.created
    # A plaintext client cannot talk to it.
    server = await ApiServer.open(config)
    async with server, grpc.aio.insecure_channel(server.address) as plain:
        try:
            await health_status(plain, timeout=5)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.UNAVAILABLE
        else:
            raise AssertionError("a plaintext call to a TLS server succeeded")


def test_flowforge_server_in_a_process_answers_health_and_stops_on_sigterm(
    workspace: Path,
) -> None:
    command = [sys.executable, "-m", "flowforge.control.cli", "server"]
    args = ["--listen", "127.0.0.1:0", "--workspace", str(workspace), "--output", "json"]
    proc = subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        started = json.loads(line)
        assert started["tls"] is False and started["mode"] == "embedded"
        assert health_status_sync(started["address"], "flowforge.v1.RunService") == SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_flowforge_token_create_list_revoke(workspace: Path) -> None:
    ws = ["--workspace", str(workspace)]
    made = run_cli("token", "create", "--project", "acme", "--role", "operator", *ws,
                   "--name", "ci", "--output", "json")  # fmt: skip
    assert made.code == 0, made.stderr
    token = made.json["token"]
    assert token.startswith(f"ffp_{made.json['id']}_")
    listed = run_cli("token", "list", *ws, "--output", "json")
    assert [(t["id"], t["role"], t["revoked_at"]) for t in listed.json["tokens"]] == [
        (made.json["id"], "operator", None)
    ]
    assert token not in listed.stdout  # the secret is never shown again
    revoked = run_cli("token", "revoke", made.json["id"], *ws, "--output", "json")
    assert revoked.code == 0 and revoked.json["revoked_at"] is not None
    unknown = run_cli("token", "revoke", "nope", *ws)
    assert unknown.code == 1 and "no token 'nope'" in unknown.stderr
    bad_role = run_cli("token", "create", "--project", "acme", "--role", "king", *ws)
    assert bad_role.code == 2


async def test_a_run_completes_through_the_api_on_postgresql_and_nats(workspace: Path) -> None:
    prefix = new_prefix()
    probe = await open_bus("nats", prefix)  # skips when NATS is absent
    await probe.close()
    with fresh_database("ff_api") as url:
        config = ServerConfig(
            workspace=workspace,
            database=url,
            nats="nats://127.0.0.1:4222",
            nats_prefix=prefix,
            bus_settings=SETTINGS,
            listen="127.0.0.1:0",
            connectors=CONNECTORS,
            services=frozenset({"workflow", "run"}),
        )
        server = await ApiServer.open(config)
        try:
            async with server, grpc.aio.insecure_channel(server.address) as channel:
                _, token = await server.storage.tokens.create(project=PROJECT, role="admin")
                md = bearer(token)
                runs = run_pb2_grpc.RunServiceStub(channel)
                await workflow_pb2_grpc.WorkflowServiceStub(channel).Submit(
                    workflow_pb2.SubmitWorkflowRequest(project=PROJECT, yaml=CHAIN), metadata=md
                )
                start = run_pb2.StartRunRequest(
                    project=PROJECT, workflow="chain", input_json='{"n": 9}'
                )
                run = await runs.Start(start, metadata=md)
                watch = run_pb2.WatchRunRequest(project=PROJECT, run_id=run.id)
                events = [e async for e in runs.Watch(watch, metadata=md)]
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
                assert events[-1].type == "run-succeeded"
                get = run_pb2.GetRunRequest(project=PROJECT, run_id=run.id)
                done = await runs.Get(get, metadata=md)
                assert done.status == "succeeded"
                assert json.loads(done.steps[-1].output_json) == {"result": 9}
        finally:
            await delete_streams(prefix)
