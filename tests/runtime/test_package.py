"""Signed packages: pack -> sign -> verify -> load -> run, and every refusal with its reason."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import stat
import tarfile
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.runtime import CompileCache, LoadError, Sandbox, Success
from flowforge.runtime.canonical import canonical_json, is_canonical_json
from flowforge.runtime.manifest import ConnectorManifest, parse_manifest
from flowforge.runtime.package import (
    COMPONENT_ENTRY,
    ENTRY_CAPS,
    MANIFEST_ENTRY,
    MAX_PACKAGE_BYTES,
    SIGNATURE_ENTRY,
    PackageError,
    Signature,
    manifest_bytes,
    pack,
    read_package,
    sign_package,
    verify_package,
)
from flowforge.runtime.signing import fingerprint, raw_public_key
from flowforge.runtime.trust import TrustStore, TrustStoreError

WAT = Path(__file__).parents[1] / "fixtures" / "wat"


def component_of(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm((WAT / f"{name}.wat").read_text()))


ECHO = component_of("echo")


def make_manifest(name: str = "acme/echo", **extra: object) -> ConnectorManifest:
    return parse_manifest(
        {
            "name": name,
            "version": "1.2.0",
            "description": "Returns its input",
            "language": "zig",
            "license": "Apache-2.0",
            "examples": [{"name": "echo", "input": {"a": 1}, "expect": {"output": {"a": 1}}}],
            **extra,
        }
    )


def fp(key: Ed25519PrivateKey) -> str:
    return fingerprint(raw_public_key(key))


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def trust(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "workspace" / "trust.json")


@pytest.fixture
def signed(key: Ed25519PrivateKey, trust: TrustStore) -> bytes:
    trust.add(raw_public_key(key), "acme")
    return sign_package(pack(make_manifest(), ECHO), key)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(CompileCache(tmp_path_factory.mktemp("compiled")))


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """An archive with exactly these headers (and data), for the hostile cases."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def entry(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def good_entries(key: Ed25519PrivateKey) -> dict[str, bytes]:
    contents = read_package(sign_package(pack(make_manifest(), ECHO), key))
    assert contents.signature is not None
    return {
        MANIFEST_ENTRY: contents.manifest_bytes,
        COMPONENT_ENTRY: contents.component,
        SIGNATURE_ENTRY: contents.signature.to_bytes(),
    }


def refusal(data: bytes | Path, trust: TrustStore, **kwargs: bool) -> str:
    with pytest.raises(PackageError) as caught:
        verify_package(data, trust, **kwargs)
    return str(caught.value)


# --- the whole flow ------------------------------------------------------------------------


def test_pack_sign_verify_load_run(
    tmp_path: Path, key: Ed25519PrivateKey, trust: TrustStore, sandbox: Sandbox
) -> None:
    unsigned = pack(make_manifest(), ECHO)
    path = tmp_path / "echo-1.2.0.ffpkg"
    path.write_bytes(sign_package(unsigned, key))
    trust.add(raw_public_key(key), "acme", "release key")

    verified = verify_package(path, trust)
    assert verified.label == "acme/echo@1.2.0"
    assert verified.fingerprint == fp(key)
    assert verified.publisher == "acme"
    assert verified.component == ECHO
    assert verified.unsigned_dev is False

    loaded = sandbox.load_package(path, trust)
    assert loaded.package.component_sha256 == loaded.component.sha256
    outcome = sandbox.run(loaded.component, input='{"a": 1}')
    assert isinstance(outcome, Success)
    assert json.loads(outcome.output) == {"a": 1}


def test_package_layout_is_a_plain_deterministic_tar(key: Ed25519PrivateKey) -> None:
    first = sign_package(pack(make_manifest(), ECHO), key)
    # Ed25519 signatures are deterministic, so the same inputs give the same file.
    assert first == sign_package(pack(make_manifest(), ECHO), key)
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [MANIFEST_ENTRY, COMPONENT_ENTRY, SIGNATURE_ENTRY]
        assert all(m.isreg() and m.mtime == 0 and m.uid == 0 for m in members)
        manifest = archive.extractfile(MANIFEST_ENTRY).read()  # type: ignore[union-attr]
        sig = json.loads(archive.extractfile(SIGNATURE_ENTRY).read())  # type: ignore[union-attr]
    assert is_canonical_json(manifest)
    assert json.loads(manifest)["component_sha256"] == read_package(first).manifest.component_sha256
    assert set(sig) == {"algorithm", "key", "signature"}
    assert sig["algorithm"] == "ed25519"
    assert sig["key"] == fp(key)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", 2.5]}) == '{"a":["é",2.5],"b":1}'.encode()
    assert not is_canonical_json(b'{"b":1,"a":2}')
    assert not is_canonical_json(b'{"a": 2}')
    assert not is_canonical_json(b'{"a":"\\u00e9"}')
    assert not is_canonical_json(b'{"a":NaN}')
    assert not is_canonical_json(b'{"a":1,"a":1}')


def test_pack_pins_the_component_digest_whatever_the_manifest_said() -> None:
    stale = make_manifest(component_sha256="0" * 64)
    contents = read_package(pack(stale, ECHO))
    assert contents.manifest.component_sha256 != "0" * 64
    assert contents.manifest_bytes == manifest_bytes(contents.manifest)


def test_pack_refuses_text_and_core_modules() -> None:
    with pytest.raises(PackageError, match="not a binary WebAssembly component"):
        pack(make_manifest(), (WAT / "echo.wat").read_bytes())


def test_load_package_still_applies_the_world_check(
    key: Ed25519PrivateKey, trust: TrustStore, sandbox: Sandbox
) -> None:
    trust.add(raw_public_key(key), "acme")
    data = sign_package(pack(make_manifest(), component_of("forbidden_http")), key)
    assert verify_package(data, trust).label == "acme/echo@1.2.0"
    with pytest.raises(LoadError, match=re.escape("acme/echo@1.2.0: ")):
        sandbox.load_package(data, trust)


# --- unsigned ------------------------------------------------------------------------------


def test_unsigned_is_refused_without_the_dev_flag(trust: TrustStore) -> None:
    unsigned = pack(make_manifest(), ECHO)
    message = refusal(unsigned, trust)
    assert "refused acme/echo@1.2.0, unsigned: the package is not signed" in message
    assert "flowforge connector sign" in message


def test_unsigned_loads_with_the_dev_flag_and_says_so(trust: TrustStore, sandbox: Sandbox) -> None:
    loaded = sandbox.load_package(pack(make_manifest(), ECHO), trust, allow_unsigned_dev=True)
    assert loaded.package.unsigned_dev is True
    assert loaded.package.fingerprint is None
    assert isinstance(sandbox.run(loaded.component, input="[1]"), Success)


def test_dev_flag_does_not_excuse_a_bad_signature(
    key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    data = sign_package(pack(make_manifest(), ECHO), key)
    assert "not trusted" in refusal(data, trust, allow_unsigned_dev=True)


# --- tampering -----------------------------------------------------------------------------


def test_any_changed_component_byte_is_refused(
    signed: bytes, key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    start = signed.index(ECHO)
    for offset in range(start, start + len(ECHO)):
        tampered = bytearray(signed)
        tampered[offset] ^= 0x01
        message = refusal(bytes(tampered), trust)
        assert f"refused acme/echo@1.2.0, signed by key {fp(key)}" in message, offset
        assert "the component was changed after packing" in message


KINDS_OF_DAMAGE = (
    "the signature does not verify",
    "is not trusted for publisher",
    "not canonical",
    "problem(s)",
    "changed after packing",
)


def test_any_changed_manifest_byte_is_refused(signed: bytes, trust: TrustStore) -> None:
    manifest = read_package(signed).manifest_bytes
    start = signed.index(manifest)
    reasons: dict[str, int] = {}
    for offset in range(start, start + len(manifest)):
        tampered = bytearray(signed)
        tampered[offset] ^= 0x01
        message = refusal(bytes(tampered), trust)
        for reason in KINDS_OF_DAMAGE:
            if reason in message:
                reasons[reason] = reasons.get(reason, 0) + 1
                break
        else:
            raise AssertionError(f"byte {offset - start}: unexpected refusal {message}")
    # Every kind of damage shows up: edits that keep the manifest valid are caught by the
    # signature (or name another publisher), the rest by the canonical form, the schema or
    # the pinned digest.
    assert set(reasons) == set(KINDS_OF_DAMAGE)


def test_a_valid_edit_of_the_manifest_fails_the_signature(
    signed: bytes, key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    tampered = signed.replace(b"Returns its input", b"Returns its inpuT")
    message = refusal(tampered, trust)
    assert f"refused acme/echo@1.2.0, signed by key {fp(key)}" in message
    assert "the signature does not verify over manifest.json" in message


def test_a_signature_claiming_another_key_does_not_verify(trust: TrustStore) -> None:
    signer, trusted = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trust.add(raw_public_key(trusted), "acme")
    contents = read_package(sign_package(pack(make_manifest(), ECHO), signer))
    assert contents.signature is not None
    forged = Signature(fp(trusted), contents.signature.signature).to_bytes()
    data = tar_of(
        entry(MANIFEST_ENTRY, contents.manifest_bytes),
        entry(COMPONENT_ENTRY, contents.component),
        entry(SIGNATURE_ENTRY, forged),
    )
    assert "the signature does not verify" in refusal(data, trust)


# --- trust ---------------------------------------------------------------------------------


def test_untrusted_key_is_refused_with_the_fix(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    data = sign_package(pack(make_manifest(), ECHO), key)
    message = refusal(data, trust)
    assert f"refused acme/echo@1.2.0, signed by key {fp(key)}" in message
    assert "the key is not trusted for publisher acme;" in message
    assert "flowforge trust add" in message
    assert "--publisher acme" in message


def test_key_trusted_for_another_publisher_is_refused(
    key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    trust.add(raw_public_key(key), "other")
    data = sign_package(pack(make_manifest(), ECHO), key)
    message = refusal(data, trust)
    assert "not trusted for publisher acme (it is trusted only for other)" in message


def test_revoked_key_stops_a_package_that_verified_before(
    signed: bytes, key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    assert verify_package(signed, trust).fingerprint == fp(key)
    # Revoked from "another process": a second store object on the same file.
    TrustStore(trust.path).revoke(fp(key))
    message = refusal(signed, trust)
    assert f"refused acme/echo@1.2.0, signed by key {fp(key)}" in message
    assert "the key was revoked at" in message


def test_revoked_key_cannot_be_trusted_again(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    trust.add(raw_public_key(key), "acme")
    trust.revoke(fp(key))
    with pytest.raises(TrustStoreError, match="cannot be trusted again"):
        trust.add(raw_public_key(key), "other")


def test_trust_store_add_is_idempotent_and_private(
    key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    first, added = trust.add(raw_public_key(key), "acme", "ci")
    again, added_again = trust.add(raw_public_key(key), "acme")
    assert (added, added_again) == (True, False)
    assert again == first
    assert [e.publisher for e in TrustStore(trust.path).entries()] == ["acme"]
    assert stat.S_IMODE(os.stat(trust.path).st_mode) == 0o600
    doc = json.loads(trust.path.read_text())
    assert set(doc["keys"][0]) == {
        "fingerprint",
        "public_key",
        "publisher",
        "added_at",
        "revoked_at",
        "comment",
    }


def test_trust_store_refuses_unknown_revocation_and_bad_publisher(trust: TrustStore) -> None:
    with pytest.raises(TrustStoreError, match="is not in the trust store"):
        trust.revoke("ed25519:" + "0" * 64)
    with pytest.raises(TrustStoreError, match="publisher 'Acme/x'"):
        trust.add(raw_public_key(Ed25519PrivateKey.generate()), "Acme/x")


def test_trust_store_entry_whose_fingerprint_names_another_key_is_refused(
    key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    trust.add(raw_public_key(key), "acme")
    doc = json.loads(trust.path.read_text())
    doc["keys"][0]["fingerprint"] = fp(Ed25519PrivateKey.generate())
    trust.path.write_text(json.dumps(doc))
    with pytest.raises(TrustStoreError, match="does not match its public key"):
        TrustStore(trust.path)


# --- hostile archives ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (entry("../manifest.json", b"{}"), "entry '../manifest.json' has a path that leaves"),
        (entry("a/../../x", b"{}"), "has a path that leaves the package"),
        (entry("/etc/manifest.json", b"{}"), "entry '/etc/manifest.json' has an absolute path"),
        (special("component.wasm", tarfile.SYMTYPE, "/etc/passwd"), "is a symbolic link"),
        (special("component.wasm", tarfile.LNKTYPE, "manifest.json"), "is a hard link"),
        (special("component.wasm", tarfile.CHRTYPE), "is a device or FIFO"),
        (special("component.wasm", tarfile.FIFOTYPE), "is a device or FIFO"),
        (special("dist", tarfile.DIRTYPE), "entry 'dist' is a directory"),
        (entry("README.md", b"hi"), "unexpected entry 'README.md'"),
        (entry("./manifest.json", b"{}"), "unexpected entry './manifest.json'"),
    ],
)
def test_hostile_entries_are_refused(
    member: tuple[tarfile.TarInfo, bytes | None],
    reason: str,
    key: Ed25519PrivateKey,
    trust: TrustStore,
) -> None:
    good = good_entries(key)
    data = tar_of(entry(MANIFEST_ENTRY, good[MANIFEST_ENTRY]), member)
    message = refusal(data, trust)
    assert message.startswith("package: ")
    assert reason in message


def test_duplicate_entry_is_refused(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    good = good_entries(key)
    data = tar_of(
        *(entry(name, body) for name, body in good.items()),
        entry(COMPONENT_ENTRY, component_of("fail")),
    )
    assert "duplicate entry 'component.wasm'" in refusal(data, trust)


@pytest.mark.parametrize("missing", [MANIFEST_ENTRY, COMPONENT_ENTRY])
def test_missing_entry_is_refused(missing: str, key: Ed25519PrivateKey, trust: TrustStore) -> None:
    good = good_entries(key)
    data = tar_of(*(entry(name, body) for name, body in good.items() if name != missing))
    assert f"missing entry '{missing}'" in refusal(data, trust)


@pytest.mark.parametrize("name", [MANIFEST_ENTRY, SIGNATURE_ENTRY, COMPONENT_ENTRY])
def test_oversized_entries_are_refused(
    name: str, key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    good = good_entries(key)
    good[name] = good[name] + b" " * (ENTRY_CAPS[name] + 1 - len(good[name]))
    data = tar_of(*(entry(n, body) for n, body in good.items()))
    assert f"entry '{name}' is {ENTRY_CAPS[name] + 1} bytes, over its cap" in refusal(data, trust)


def test_entry_size_is_checked_on_the_header_before_reading(trust: TrustStore) -> None:
    info = tarfile.TarInfo(COMPONENT_ENTRY)
    info.size = 1 << 40  # claims a terabyte; the data is not there
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    message = refusal(header + b"\0" * 1024, trust)
    assert f"entry 'component.wasm' is {1 << 40} bytes, over its cap" in message


def test_package_over_the_total_cap_is_refused(trust: TrustStore) -> None:
    message = refusal(b"\0" * (MAX_PACKAGE_BYTES + 1), trust)
    assert f"larger than the package cap of {MAX_PACKAGE_BYTES} bytes" in message


def test_trailing_data_and_compression_are_refused(signed: bytes, trust: TrustStore) -> None:
    assert "unexpected data after the last entry" in refusal(signed + b"junk", trust)
    assert "not a readable uncompressed tar archive" in refusal(gzip.compress(signed), trust)
    assert "not a readable uncompressed tar archive" in refusal(b"", trust)


def test_non_canonical_manifest_is_refused(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    good = good_entries(key)
    pretty = json.dumps(json.loads(good[MANIFEST_ENTRY]), indent=2).encode()
    data = tar_of(entry(MANIFEST_ENTRY, pretty), entry(COMPONENT_ENTRY, ECHO))
    assert "manifest.json is not canonical JSON" in refusal(data, trust)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": "1.2"}, "version: Value error, '1.2' is not a semantic version"),
        ({"name": "no-publisher"}, "name: Value error"),
        ({"world": "other:world@1.0.0"}, "world:"),
        ({"surprise": True}, "surprise: Extra inputs are not permitted"),
        ({"component_sha256": None}, "manifest.json has no component_sha256"),
    ],
)
def test_malformed_manifest_is_refused(
    change: dict[str, object], reason: str, key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    doc = json.loads(good_entries(key)[MANIFEST_ENTRY])
    doc.update(change)
    data = tar_of(entry(MANIFEST_ENTRY, canonical_json(doc)), entry(COMPONENT_ENTRY, ECHO))
    message = refusal(data, trust)
    assert message.startswith("package: ")
    assert reason in message


def test_manifest_that_is_not_an_object_is_refused(trust: TrustStore) -> None:
    data = tar_of(entry(MANIFEST_ENTRY, b"[1,2]"), entry(COMPONENT_ENTRY, ECHO))
    assert "manifest.json is not a JSON object" in refusal(data, trust)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (b"not json", "signature.json is not JSON"),
        (b'{"algorithm":"rsa","key":"x","signature":"y"}', "unsupported algorithm 'rsa'"),
        (b'{"algorithm":"ed25519","key":"x","signature":"y"}', "is not an ed25519:<hex>"),
        (b'{"key":"x"}', 'expected {"algorithm", "key", "signature"}'),
    ],
)
def test_malformed_signature_is_refused(
    signature: bytes, reason: str, key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    good = good_entries(key)
    good[SIGNATURE_ENTRY] = signature
    data = tar_of(*(entry(n, body) for n, body in good.items()))
    assert reason in refusal(data, trust)


def test_package_path_is_named_and_must_be_a_regular_file(
    tmp_path: Path, signed: bytes, trust: TrustStore
) -> None:
    path = tmp_path / "echo.ffpkg"
    path.write_bytes(signed + b"junk")
    assert refusal(path, trust).startswith(f"{path}: unexpected data")
    assert refusal(tmp_path / "absent.ffpkg", trust) == f"{tmp_path / 'absent.ffpkg'}: no such file"
    fifo = tmp_path / "fifo.ffpkg"
    os.mkfifo(fifo)
    assert refusal(fifo, trust) == f"{fifo}: not a regular file"
