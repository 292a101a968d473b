"""Fixtures for the bus and worker tests: both buses (the in-process one and NATS JetStream
on 127.0.0.1, each NATS test with its own stream prefix, deleted afterwards), and a
workspace holding signed packages and the trust store that vouches for them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.runtime.bus import Bus, BusError, BusSettings, InProcessBus
from flowforge.runtime.bus.nats import NatsBus
from flowforge.runtime.manifest import ConnectorManifest, parse_manifest
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import raw_public_key
from flowforge.runtime.trust import TrustStore

NATS_URL = os.environ.get("FLOWFORGE_TEST_NATS_URL", "nats://127.0.0.1:4222")
SPIN_WAT = Path(__file__).with_name("spin.wat")
# The tests' delivery policy: short enough that redeliveries happen within a test.
SETTINGS = BusSettings(ack_wait=1.0, max_deliver=3, duplicate_window=60.0)
BUS_KINDS = ["memory", "nats"]


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def open_bus(kind: str, prefix: str, settings: BusSettings = SETTINGS) -> Bus:
    if kind == "memory":
        return InProcessBus(settings)
    try:
        return await NatsBus.connect(NATS_URL, prefix=prefix, settings=settings)
    except BusError as exc:
        message = f"no NATS JetStream at {NATS_URL}: {exc}"
        if os.environ.get("CI"):  # CI starts NATS; a silent skip there would hide it
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=BUS_KINDS)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Each bus in turn, with the tests' settings; a NATS one is removed afterwards."""
    opened = await open_bus(request.param, new_prefix())
    yield opened
    if isinstance(opened, NatsBus):
        await opened.delete_streams()
    await opened.close()


async def delete_streams(prefix: str) -> None:
    """Remove the streams of `prefix` from the test NATS server."""
    admin = await open_bus("nats", prefix)
    assert isinstance(admin, NatsBus)
    await admin.delete_streams()
    await admin.close()


@pytest.fixture
async def nats_prefix() -> AsyncIterator[str]:
    """A fresh stream prefix on the test NATS server, its streams deleted afterwards."""
    prefix = new_prefix()
    yield prefix
    await delete_streams(prefix)


def spin_config(seconds: float) -> str:
    """A config that keeps the spin component busy for `seconds` (a millisecond a byte)."""
    return '{"pad":"' + "x" * max(0, int(seconds * 1000) - 10) + '"}'


def make_manifest(name: str, language: str) -> ConnectorManifest:
    return parse_manifest(
        {
            "name": name,
            "version": "1.0.0",
            "description": "A test connector for the bus and worker tests",
            "language": language,
            "license": "Apache-2.0",
            "examples": [{"name": "echo", "input": {"a": 1}, "expect": {"output": {"a": 1}}}],
        }
    )


@dataclass
class Workspace:
    """A workspace folder with a trust store and `packages/<digest>.ffpkg` files."""

    root: Path
    trust: TrustStore
    key: Ed25519PrivateKey

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.packages.mkdir(parents=True, exist_ok=True)
        (self.packages / f"{digest}.ffpkg").write_bytes(data)
        return digest

    def add_signed(self, manifest: ConnectorManifest, component: bytes) -> str:
        return self.add(sign_package(pack(manifest, component), self.key))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    key = Ed25519PrivateKey.generate()
    root = tmp_path / "workspace"
    trust = TrustStore(root / "trust.json")
    trust.add(raw_public_key(key), "acme")
    return Workspace(root, trust, key)


@pytest.fixture(scope="session")
def spin_component() -> bytes:
    return bytes(wasmtime.wat2wasm(SPIN_WAT.read_text()))


@pytest.fixture
def spin_digest(workspace: Workspace, spin_component: bytes) -> str:
    """The signed spin package, installed in the workspace."""
    return workspace.add_signed(make_manifest("acme/spin", "zig"), spin_component)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait (polling) until `predicate()` holds; fail naming `what` after `timeout` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
