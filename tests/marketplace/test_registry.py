"""The registry's service layer on SQLite and PostgreSQL: publishing, its checks in order
(each refusal leaves every table and the blob folder unchanged), browsing, yanking and
key approval."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.marketplace.authorization import approval_authorization, yank_authorization
from flowforge.marketplace.db import current_revision, head_revision
from flowforge.marketplace.errors import NotFound, PublishRefused, Unauthorized
from flowforge.marketplace.service import Registry
from flowforge.runtime.canonical import canonical_json
from flowforge.runtime.package import ENTRY_CAPS
from flowforge.runtime.signing import fingerprint, raw_public_key
from tests.marketplace.conftest import MakePackage

WAT = Path(__file__).parents[1] / "fixtures" / "wat"


def pub(key: Ed25519PrivateKey) -> bytes:
    return raw_public_key(key)


def entries(package: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:") as archive:
        out: dict[str, bytes] = {}
        for info in archive.getmembers():
            handle = archive.extractfile(info)
            assert handle is not None
            out[info.name] = handle.read()
        return out


def tar(*members: tuple[str, bytes], kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name.endswith("!link"):
                info.name, info.type, info.linkname, info.size = name[:-5], kind, link, 0
                archive.addfile(info)
            else:
                archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def refused(registry: Registry, package: bytes, check: str, *words: str) -> str:
    """Publish, expect a refusal by `check` whose reason holds `words`, and an unchanged
    registry (rows and blobs)."""
    before = await registry.counts()
    with pytest.raises(PublishRefused) as caught:
        await registry.publish(package, None)
    assert caught.value.check == check, str(caught.value)
    for word in words:
        assert word in caught.value.reason, caught.value.reason
    assert await registry.counts() == before
    return caught.value.reason


async def test_migrations_bring_a_fresh_database_to_head(registry: Registry) -> None:
    assert await current_revision(registry.engine) == head_revision()


async def test_publish_then_search_info_download(
    registry: Registry, make_package: MakePackage, owner_key: Ed25519PrivateKey
) -> None:
    package = make_package(owner_key)
    result = await registry.publish(package, pub(owner_key))
    assert result.created and (result.name, result.version) == ("acme/encode", "1.0.0")
    assert await registry.counts() == {
        "keys": 1, "namespaces": 1, "namespace_keys": 1, "packages": 1, "versions": 1,
        "blobs": 1,
    }  # fmt: skip
    # The score's breakdown is always there, with every factor and its reason.
    factors = {f.name: f for f in result.info.score.factors}
    assert set(factors) == {
        "conformance", "least_privilege", "semver", "signing_key", "docs", "license",
        "footprint",
    }  # fmt: skip
    assert factors["conformance"].measured["passed"] == factors["conformance"].measured["examples"]
    assert factors["footprint"].measured["compile_ms"] > 0
    assert 0 < result.info.score.total <= 100 and result.info.gate.installable

    # The same bytes again: success, nothing changes.
    again = await registry.publish(package)
    assert not again.created
    assert (await registry.counts())["versions"] == 1

    [hit] = await registry.search("base64 url", language="zig")
    assert hit.name == "acme/encode" and hit.score == result.info.score.total
    assert await registry.search("base64", language="python") == []
    assert await registry.search("base64", min_score=101) == []
    assert await registry.search("", capability="network") == []
    assert [h.name for h in await registry.search("", capability="none")] == ["acme/encode"]

    info = await registry.info("acme/encode")
    assert info.owner == fingerprint(pub(owner_key))
    assert info.selected.signer == info.owner
    assert info.selected.network == () and info.selected.secrets == ()

    data = await registry.download("acme/encode", "^1")
    assert data == package
    assert (await registry.info("acme/encode")).selected.downloads == 1
    with pytest.raises(NotFound):
        await registry.download("acme/encode", "^2")
    with pytest.raises(NotFound):
        await registry.info("acme/nothing")


async def test_a_changed_component_byte_is_refused(
    registry: Registry, make_package: MakePackage, owner_key: Ed25519PrivateKey
) -> None:
    parts = entries(make_package(owner_key))
    component = bytearray(parts["component.wasm"])
    component[len(component) // 2] ^= 0x01
    bad = tar(
        ("manifest.json", parts["manifest.json"]),
        ("component.wasm", bytes(component)),
        ("signature.json", parts["signature.json"]),
    )
    await refused(registry, bad, "package", "changed after packing")


async def test_a_changed_manifest_byte_is_refused(
    registry: Registry, make_package: MakePackage, owner_key: Ed25519PrivateKey
) -> None:
    good = make_package(owner_key)
    await registry.publish(make_package(owner_key, version="0.9.0"), pub(owner_key))
    parts = entries(good)
    manifest = json.loads(parts["manifest.json"])
    manifest["description"] = manifest["description"].replace("base64", "base65")
    bad = tar(
        ("manifest.json", canonical_json(manifest)),
        ("component.wasm", parts["component.wasm"]),
        ("signature.json", parts["signature.json"]),
    )
    await refused(registry, bad, "signature", "does not verify")


async def test_unsigned_and_unknown_keys_are_refused(
    registry: Registry, make_package: MakePackage, owner_key: Ed25519PrivateKey
) -> None:
    parts = entries(make_package(owner_key))
    unsigned = tar(
        ("manifest.json", parts["manifest.json"]), ("component.wasm", parts["component.wasm"])
    )
    await refused(registry, unsigned, "signature", "not signed")
    # The registry has never seen this key and was not given it.
    await refused(registry, make_package(owner_key), "signature", "has not seen key")


async def test_a_second_key_needs_the_namespace_owners_approval(
    registry: Registry,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    await registry.publish(make_package(owner_key), pub(owner_key))
    intruder = make_package(other_key, version="1.0.1")
    before = await registry.counts()
    with pytest.raises(PublishRefused) as caught:
        await registry.publish(intruder, pub(other_key))
    assert caught.value.check == "namespace" and "held by key" in caught.value.reason
    assert await registry.counts() == before

    other = fingerprint(pub(other_key))
    # Only the owner may approve, and only with a valid signature.
    with pytest.raises(Unauthorized):
        await registry.approve_key("acme", other, approval_authorization(other_key, "acme", other))
    forged = approval_authorization(owner_key, "acme", "ed25519:" + "0" * 64)
    with pytest.raises(Unauthorized):
        await registry.approve_key("acme", other, forged)
    await registry.approve_key("acme", other, approval_authorization(owner_key, "acme", other))

    result = await registry.publish(intruder, pub(other_key))
    assert result.created
    assert (await registry.info("acme/encode")).approved_keys == (other,)
    roles = {f.name: f for f in result.info.score.factors}["signing_key"].measured
    assert roles["role"] == "approved"


async def test_a_republished_version_with_other_content_is_refused(
    registry: Registry, make_package: MakePackage, owner_key: Ed25519PrivateKey
) -> None:
    await registry.publish(make_package(owner_key), pub(owner_key))
    other = make_package(owner_key, description="Encode and decode text, changed after release")
    await refused(registry, other, "version", "already published with other content")


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("traversal", "leaves the package"),
        ("symlink", "symbolic link"),
        ("hardlink", "hard link"),
        ("oversized", "over its cap"),
        ("extra", "unexpected entry"),
    ],
)
async def test_hostile_archives_are_refused(
    registry: Registry,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    case: str,
    words: str,
) -> None:
    parts = entries(make_package(owner_key))
    manifest, component = parts["manifest.json"], parts["component.wasm"]
    archives = {
        "traversal": tar(("manifest.json", manifest), ("../component.wasm", component)),
        "symlink": tar(("manifest.json", manifest), ("component.wasm!link", b""),
                       kind=tarfile.SYMTYPE, link="/etc/passwd"),
        "hardlink": tar(("manifest.json", manifest), ("component.wasm!link", b""),
                        kind=tarfile.LNKTYPE, link="manifest.json"),
        "oversized": tar(("manifest.json", manifest + b" " * ENTRY_CAPS["manifest.json"]),
                         ("component.wasm", component)),
        "extra": tar(("manifest.json", manifest), ("component.wasm", component),
                     ("README.md", b"hi")),
    }  # fmt: skip
    await refused(registry, archives[case], "package", words)


async def test_a_malformed_manifest_is_refused(
    registry: Registry, make_package: MakePackage, owner_key: Ed25519PrivateKey
) -> None:
    parts = entries(make_package(owner_key))
    manifest = json.loads(parts["manifest.json"])
    manifest["version"] = "one"
    bad = tar(
        ("manifest.json", canonical_json(manifest)), ("component.wasm", parts["component.wasm"])
    )
    await refused(registry, bad, "package", "version")


async def test_a_component_outside_the_world_is_refused(
    registry: Registry, encode_build: tuple[object, bytes], owner_key: Ed25519PrivateKey
) -> None:
    from flowforge.runtime.package import pack, sign_package

    manifest = encode_build[0]
    component = bytes(wasmtime.wat2wasm((WAT / "forbidden_http.wat").read_text()))
    bad = sign_package(pack(manifest, component), owner_key)  # type: ignore[arg-type]
    before = await registry.counts()
    with pytest.raises(PublishRefused) as caught:
        await registry.publish(bad, pub(owner_key))
    assert caught.value.check == "world" and "wasi:http" in caught.value.reason
    assert await registry.counts() == before


async def test_failing_examples_are_refused(
    registry: Registry,
    encode_build: tuple[object, bytes],
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
) -> None:
    manifest = encode_build[0]
    examples = list(manifest.examples)  # type: ignore[attr-defined]
    wrong = examples[0].model_copy(
        update={"expect": examples[0].expect.model_copy(update={"output": {"data": "nope"}})}
    )
    bad = make_package(owner_key, examples=[wrong, *examples[1:]])
    before = await registry.counts()
    with pytest.raises(PublishRefused) as caught:
        await registry.publish(bad, pub(owner_key))
    assert caught.value.check == "examples"
    assert "1/" in caught.value.reason and repr(examples[0].name) in caught.value.reason
    assert await registry.counts() == before


async def test_semver_violation_needs_a_major_version(
    registry: Registry,
    encode_build: tuple[object, bytes],
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
) -> None:
    manifest = encode_build[0]
    schemas = manifest.schemas  # type: ignore[attr-defined]
    # 1.0.0 has an output property that later versions drop: that breaks readers of it.
    output = json.loads(json.dumps(schemas.output))
    output["properties"]["length"] = {"type": "integer"}
    wider = schemas.model_copy(update={"output": output})
    await registry.publish(make_package(owner_key, schemas=wider), pub(owner_key))
    reason = await refused(registry, make_package(owner_key, version="1.1.0"), "semver", "length")
    assert "removed" in reason and "2.0.0" in reason
    assert (await registry.publish(make_package(owner_key, version="2.0.0"))).created


async def test_yank_hides_a_version_from_ranges_but_not_from_exact_pins(
    registry: Registry,
    make_package: MakePackage,
    owner_key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    await registry.publish(make_package(owner_key), pub(owner_key))
    await registry.publish(make_package(owner_key, version="1.0.1"))
    with pytest.raises(Unauthorized):
        await registry.yank(
            "acme/encode", "1.0.1", yank_authorization(other_key, "acme/encode", "1.0.1")
        )
    # A signature for another version is not a signature for this one.
    with pytest.raises(Unauthorized):
        await registry.yank(
            "acme/encode", "1.0.1", yank_authorization(owner_key, "acme/encode", "1.0.0")
        )
    info = await registry.yank(
        "acme/encode", "1.0.1", yank_authorization(owner_key, "acme/encode", "1.0.1")
    )
    assert info.yanked
    assert (await registry.resolve("acme/encode", "^1")).version == "1.0.0"
    assert (await registry.resolve("acme/encode", "=1.0.1", include_yanked=True)).version == "1.0.1"
    [hit] = await registry.search("encode")
    assert hit.version == "1.0.0"
