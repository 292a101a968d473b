"""Fixtures for the scheduler tests: a workspace with signed packages (the echo WAT and
the Zig test guest), a resolver over them, and an embedded engine on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.workflow import (
    ResolvedConnector,
    StaticResolver,
    WorkflowVersion,
    load_spec_text,
    validate,
)
from flowforge.runtime.bus import BusSettings
from flowforge.runtime.manifest import ConnectorManifest, parse_manifest
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import raw_public_key
from flowforge.runtime.trust import TrustStore
from tests.fixtures import fixture_path

SETTINGS = BusSettings(ack_wait=2.0, max_deliver=3, duplicate_window=60.0)


def manifest(name: str, **fields: Any) -> ConnectorManifest:
    data: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "description": "A test connector for the scheduler tests",
        "language": "zig",
        "license": "Apache-2.0",
    }
    data.update(fields)
    return parse_manifest(data)


@dataclass
class Packages:
    """Signed packages in a workspace, and the resolver that pins them."""

    root: Path
    key: Ed25519PrivateKey
    resolver: StaticResolver

    def add(self, connector: ConnectorManifest, component: bytes) -> str:
        data = sign_package(pack(connector, component), self.key)
        digest = hashlib.sha256(data).hexdigest()
        folder = self.root / "packages"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{digest}.ffpkg").write_bytes(data)
        self.resolver.add(ResolvedConnector(connector.name, connector.version, digest, connector))
        return digest

    def workflow(self, text: str) -> WorkflowVersion:
        return validate(load_spec_text(text), self.resolver)


@pytest.fixture(scope="session")
def echo_component() -> bytes:
    return bytes(wasmtime.wat2wasm(fixture_path("echo").read_text()))


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pool keys and the master key in a folder of the test's own."""
    folder = tmp_path / "config"
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(folder))
    monkeypatch.delenv("FLOWFORGE_DATABASE", raising=False)
    return folder


@pytest.fixture
def packages(
    tmp_path: Path,
    config_dir: Path,
    echo_component: bytes,
    spin_component: bytes,
    zig_guest: Path,
) -> Packages:
    key = Ed25519PrivateKey.generate()
    root = tmp_path / "workspace"
    TrustStore(root / "trust.json").add(raw_public_key(key), "acme")
    found = Packages(root, key, StaticResolver())
    found.add(manifest("acme/echo"), echo_component)
    found.add(manifest("acme/spin", limits={"timeout_s": 60}), spin_component)
    found.add(
        manifest(
            "acme/guest",
            capabilities={"network": ["svc.test"], "secrets": ["token"]},
        ),
        zig_guest.read_bytes(),
    )
    return found


OpenEngine = Callable[..., Awaitable[EmbeddedEngine]]


@pytest.fixture
async def open_engine(packages: Packages) -> AsyncIterator[OpenEngine]:
    """Opens embedded engines on the workspace (closed at the end of the test)."""
    opened: list[EmbeddedEngine] = []

    async def make(**options: Any) -> EmbeddedEngine:
        options.setdefault("bus_settings", SETTINGS)
        engine = await EmbeddedEngine.open(packages.root, **options)
        engine.resolver = packages.resolver
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        if not engine.closed:
            await engine.close()


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


SPIN_WAT = Path(__file__).parents[2] / "runtime" / "bus" / "spin.wat"


@pytest.fixture(scope="session")
def spin_component() -> bytes:
    """Busy for (length of its config) milliseconds, then echoes its input."""
    return bytes(wasmtime.wat2wasm(SPIN_WAT.read_text()))


def spin_config(seconds: float) -> dict[str, str]:
    return {"pad": "x" * max(0, int(seconds * 1000) - 10)}
