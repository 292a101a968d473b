"""A workspace for the CLI-as-client tests: the echo connector signed, trusted and
installed (lock file + package), the workflows the tests submit, and helpers to run the
CLI against it (in-process by default, or a `flowforge server` on a free port)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.marketplace.lockfile import LockEntry, LockFile
from flowforge.runtime.manifest import parse_manifest
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import raw_public_key
from flowforge.runtime.trust import TrustStore
from tests.cli import CliResult, run_cli
from tests.control.scheduler.test_embedded import APPROVAL
from tests.fixtures import fixture_path

TRIVIAL = """\
name: trivial3
steps:
  a:
    uses: acme/echo@^1
    input: {n: "${{ inputs.n }}"}
  b:
    uses: acme/echo@^1
    input: {n: "${{ steps.a.output.n }}"}
  c:
    uses: acme/echo@^1
    input: {n: "${{ steps.b.output.n }}"}
"""

# Line 5 names a step that does not exist; line 7 a connector that is not installed.
INVALID = """\
name: broken
steps:
  a:
    uses: acme/echo@^1
    needs: [nope]
  b:
    uses: acme/missing@^1
"""


@dataclass(frozen=True)
class Workspace:
    root: Path
    files: Path

    def cli(self, *args: str, timeout: float = 120.0, stdin: str | None = None) -> CliResult:
        """`flowforge ARGS --workspace ROOT` (in-process unless ARGS name a server)."""
        return run_cli(*args, "--workspace", str(self.root), timeout=timeout, stdin=stdin)

    def workflow(self, name: str, text: str) -> Path:
        path = self.files / f"{name}.yaml"
        path.write_text(text)
        return path


def install_echo(root: Path) -> None:
    """acme/echo@1.0.0, signed by a key the workspace trusts, installed as `marketplace
    install` leaves it."""
    key = Ed25519PrivateKey.generate()
    TrustStore(root / "trust.json").add(raw_public_key(key), "acme")
    component = bytes(wasmtime.wat2wasm(fixture_path("echo").read_text()))
    manifest = parse_manifest(
        {
            "name": "acme/echo",
            "version": "1.0.0",
            "description": "Returns its input, for the CLI tests",
            "language": "zig",
            "license": "Apache-2.0",
        }
    )
    data = sign_package(pack(manifest, component), key)
    digest = hashlib.sha256(data).hexdigest()
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "packages" / f"{digest}.ffpkg").write_bytes(data)
    with LockFile(root).editing() as entries:
        entries["acme/echo"] = LockEntry(
            "acme/echo", "1.0.0", digest, hashlib.sha256(component).hexdigest()
        )


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("FLOWFORGE_DATABASE", "FLOWFORGE_SERVER", "FLOWFORGE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert "FLOWFORGE_SERVER" not in os.environ
    root = tmp_path / "workspace"
    install_echo(root)
    files = tmp_path / "files"
    files.mkdir()
    found = Workspace(root, files)
    found.workflow("trivial3", TRIVIAL)
    found.workflow("approval", APPROVAL % "")
    found.workflow("broken", INVALID)
    return found
