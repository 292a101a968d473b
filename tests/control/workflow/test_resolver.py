"""Resolving `uses` against a workspace: its lock file and installed package files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.control.workflow import ResolveError, WorkspaceResolver, load_spec_text, validate
from flowforge.marketplace.install import package_path
from flowforge.marketplace.lockfile import LockEntry, LockFile
from flowforge.runtime.package import pack, sign_package
from flowforge.runtime.signing import raw_public_key
from flowforge.runtime.trust import TrustStore

from .helpers import SOURCE

COMPONENT = b"\0asm\x0d\x00\x01\x00"  # a component header: the resolver never runs it


def install(workspace: Path, data: bytes, version: str = "1.0.0") -> str:
    """Lay out what `flowforge marketplace install` leaves: the package file and the lock."""
    digest = hashlib.sha256(data).hexdigest()
    target = package_path(workspace, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    component = hashlib.sha256(COMPONENT).hexdigest()
    with LockFile(workspace).editing() as entries:
        entries[SOURCE.name] = LockEntry(SOURCE.name, version, digest, component)
    return digest


def test_an_installed_package_resolves_with_its_digest_and_manifest(tmp_path: Path) -> None:
    digest = install(tmp_path, pack(SOURCE, COMPONENT))
    found = WorkspaceResolver(tmp_path).resolve("acme/source", "^1")
    assert (found.name, found.version, found.digest) == ("acme/source", "1.0.0", digest)
    assert found.manifest.capabilities.secrets == ["token"]
    version = validate(
        load_spec_text("name: w\nsteps:\n  s: {uses: acme/source@^1}\n", "wf.yaml"),
        WorkspaceResolver(tmp_path),
    )
    pin = version.steps["s"].connector
    assert pin is not None and pin.digest == digest


def test_why_a_connector_does_not_resolve(tmp_path: Path) -> None:
    resolver = WorkspaceResolver(tmp_path)
    with pytest.raises(
        ResolveError, match=r"acme/source is not installed in .*marketplace install"
    ):
        resolver.resolve("acme/source", "^1")
    digest = install(tmp_path, pack(SOURCE, COMPONENT))
    with pytest.raises(
        ResolveError, match=r"acme/source is installed at 1.0.0, which does not match '\^2'"
    ):
        resolver.resolve("acme/source", "^2")
    package_path(tmp_path, digest).write_bytes(b"tampered")
    with pytest.raises(ResolveError, match=f"has sha256 .*, the lock file pins {digest}"):
        WorkspaceResolver(tmp_path).resolve("acme/source", "^1")
    package_path(tmp_path, digest).unlink()
    with pytest.raises(ResolveError, match=r"the package file .* is missing; reinstall it"):
        WorkspaceResolver(tmp_path).resolve("acme/source", "^1")


def test_with_a_trust_store_only_signed_trusted_packages_resolve(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_package(pack(SOURCE, COMPONENT), key)
    install(tmp_path, signed)
    trust = TrustStore(tmp_path / "trust.json")
    with pytest.raises(ResolveError, match=r"acme/source@1\.0\.0: the key is not trusted"):
        WorkspaceResolver(tmp_path, trust).resolve("acme/source", "^1")
    trust.add(raw_public_key(key), "acme")
    found = WorkspaceResolver(tmp_path, trust).resolve("acme/source", "^1")
    assert found.version == "1.0.0"
    install(tmp_path, pack(SOURCE, COMPONENT))  # now an unsigned build
    with pytest.raises(ResolveError, match="not signed"):
        WorkspaceResolver(tmp_path, trust).resolve("acme/source", "^1")
