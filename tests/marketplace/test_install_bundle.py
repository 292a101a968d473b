"""Installing into a workspace (trust, lock file, compile cache) and air-gap bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.marketplace.authorization import yank_authorization
from flowforge.marketplace.errors import BundleError
from flowforge.marketplace.install import InstallRefused, install, installed_path, uninstall
from flowforge.marketplace.lockfile import LockFile
from flowforge.marketplace.service import Registry
from flowforge.runtime import CompileCache, Sandbox, Success
from flowforge.runtime.signing import fingerprint, raw_public_key
from flowforge.runtime.trust import TrustStore
from tests.marketplace.conftest import MakePackage


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(CompileCache(tmp_path / "compiled"))


def trusting(workspace: Path, key: Ed25519PrivateKey, publisher: str = "acme") -> TrustStore:
    trust = TrustStore(workspace / "trust.json")
    trust.add(raw_public_key(key), publisher)
    return trust


async def test_install_verifies_precompiles_locks_and_runs(
    sqlite_registry: Registry,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    workspace: Path,
    sandbox: Sandbox,
) -> None:
    await sqlite_registry.publish(make_package(owner_key), raw_public_key(owner_key))
    await sqlite_registry.publish(make_package(owner_key, version="1.1.0"))
    trust = trusting(workspace, owner_key)
    done = await install(sqlite_registry, workspace, trust, "acme/encode", "~1.0", sandbox=sandbox)
    assert done.version == "1.0.0" and done.path.is_file()
    lock = json.loads((workspace / "flowforge.lock").read_text())
    assert lock["packages"]["acme/encode"]["package_sha256"] == done.package_sha256
    assert sandbox.cache.artefact_path(done.component_sha256).is_file()  # precompiled

    loaded = sandbox.load_package(installed_path(workspace, "acme/encode"), trust)
    example = loaded.package.manifest.examples[0]
    outcome = sandbox.run(
        loaded.component, config=json.dumps(example.config), input=json.dumps(example.input)
    )
    assert isinstance(outcome, Success) and json.loads(outcome.output) == example.expect.output

    # Locked: a wider range still installs the locked version, until --update.
    again = await install(sqlite_registry, workspace, trust, "acme/encode", "^1", sandbox=sandbox)
    assert again.version == "1.0.0"
    moved = await install(
        sqlite_registry, workspace, trust, "acme/encode", "^1", update=True, sandbox=sandbox
    )
    assert moved.version == "1.1.0" and moved.previous is not None
    assert not done.path.exists()  # the old file is no longer used by any entry
    uninstall(workspace, "acme/encode")
    assert LockFile(workspace).entries() == {} and not moved.path.exists()
    with pytest.raises(InstallRefused):
        uninstall(workspace, "acme/encode")


async def test_install_refuses_a_digest_that_differs_from_the_lock(
    tmp_path: Path,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    workspace: Path,
    sandbox: Sandbox,
) -> None:
    trust = trusting(workspace, owner_key)
    first = await Registry.open(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", tmp_path / "a")
    second = await Registry.open(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b")
    try:
        await first.publish(make_package(owner_key), raw_public_key(owner_key))
        # Another registry serves other bytes under the same name and version.
        other = make_package(owner_key, description="Encode and decode text: a different build")
        await second.publish(other, raw_public_key(owner_key))
        done = await install(first, workspace, trust, "acme/encode", "1.0.0", sandbox=sandbox)
        lock_before = (workspace / "flowforge.lock").read_bytes()
        with pytest.raises(InstallRefused, match=r"pins .* lock wins"):
            await install(second, workspace, trust, "acme/encode", "1.0.0", sandbox=sandbox)
        assert (workspace / "flowforge.lock").read_bytes() == lock_before
        assert done.path.is_file()
        moved = await install(
            second, workspace, trust, "acme/encode", "1.0.0", update=True, sandbox=sandbox
        )
        assert moved.package_sha256 != done.package_sha256
    finally:
        await first.close()
        await second.close()


async def test_install_refuses_untrusted_and_revoked_keys(
    sqlite_registry: Registry,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
    workspace: Path,
    sandbox: Sandbox,
) -> None:
    await sqlite_registry.publish(make_package(owner_key), raw_public_key(owner_key))
    stranger = trusting(workspace, other_key)  # trusts another key only
    with pytest.raises(InstallRefused, match="not trusted for publisher acme"):
        await install(sqlite_registry, workspace, stranger, "acme/encode", sandbox=sandbox)
    assert not (workspace / "flowforge.lock").exists()
    trust = trusting(workspace, owner_key)
    trust.revoke(fingerprint(raw_public_key(owner_key)))
    with pytest.raises(InstallRefused, match="revoked"):
        await install(sqlite_registry, workspace, trust, "acme/encode", sandbox=sandbox)
    assert not (workspace / "packages").exists()


async def test_bundle_round_trip_and_trust_on_import(
    tmp_path: Path,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    source = await Registry.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", tmp_path / "s")
    target = await Registry.open(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path / "t")
    try:
        await source.publish(make_package(owner_key), raw_public_key(owner_key))
        await source.publish(make_package(owner_key, version="1.0.1"))
        await source.yank(
            "acme/encode", "1.0.1", yank_authorization(owner_key, "acme/encode", "1.0.1")
        )
        bundle = tmp_path / "site.ffbundle"
        exported = await source.export_bundle(bundle)
        assert [v.version for v in exported] == ["1.0.0", "1.0.1"]

        # Untrusted on the air-gapped side: nothing is imported.
        untrusting = TrustStore(tmp_path / "other-trust.json")
        untrusting.add(raw_public_key(other_key), "acme")
        before = await target.counts()
        with pytest.raises(BundleError, match=r"not trusted.*nothing was imported"):
            await target.import_bundle(bundle, untrusting)
        assert await target.counts() == before

        revoked = TrustStore(tmp_path / "revoked.json")
        revoked.add(raw_public_key(owner_key), "acme")
        revoked.revoke(fingerprint(raw_public_key(owner_key)))
        with pytest.raises(BundleError, match="revoked"):
            await target.import_bundle(bundle, revoked)
        assert await target.counts() == before

        trust = TrustStore(tmp_path / "trust.json")
        trust.add(raw_public_key(owner_key), "acme")
        results = await target.import_bundle(bundle, trust)
        assert [(r.version, r.outcome) for r in results] == [
            ("1.0.0", "published"),
            ("1.0.1", "published"),
        ]
        info = await target.info("acme/encode")
        assert [(v.version, v.yanked) for v in info.versions] == [("1.0.1", True), ("1.0.0", False)]
        again = await target.import_bundle(bundle, trust)
        assert {r.outcome for r in again} == {"present"}
    finally:
        await source.close()
        await target.close()


async def test_a_hostile_bundle_is_refused(tmp_path: Path, sqlite_registry: Registry) -> None:
    import io
    import tarfile

    bundle = tmp_path / "evil.ffbundle"
    with tarfile.open(bundle, "w") as archive:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        data = b"boom"
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(BundleError, match="leaves the bundle"):
        await sqlite_registry.import_bundle(bundle, TrustStore(tmp_path / "t.json"))
