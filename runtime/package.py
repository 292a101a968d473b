"""Connector packages (`.ffpkg`): the one file a runtime agrees to load.

A package is an uncompressed POSIX (ustar) tar holding exactly these regular files:

    manifest.json    the canonical manifest (sorted keys, no whitespace, UTF-8), which pins
                     the component by its sha256 (`component_sha256`)
    component.wasm   the component
    signature.json   {"algorithm": "ed25519", "key": "<fingerprint>", "signature": "<base64>"}
                     over the exact bytes of manifest.json

A package without signature.json is the unsigned intermediate that `flowforge connector
pack` writes and `flowforge connector sign` completes. The runtime loads it only when the
caller passes the explicit development flag, and the result says so (`unsigned_dev`).

Packages are hostile input. They are read into memory (never extracted to disk) with size
caps checked against each header before its data is read; anything but the expected
entries (links, devices, directories, traversal, absolute or duplicate names, extra or
missing entries, trailing data) is refused with the package file named and the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .canonical import canonical_json, is_canonical_json
from .manifest import ConnectorManifest, ManifestError, parse_manifest
from .signing import ALGORITHM, SIGNATURE_BYTES, fingerprint, is_fingerprint, raw_public_key, sign
from .signing import verify as verify_signature
from .trust import TrustStore

PACKAGE_SUFFIX: Final = ".ffpkg"
MANIFEST_ENTRY: Final = "manifest.json"
COMPONENT_ENTRY: Final = "component.wasm"
SIGNATURE_ENTRY: Final = "signature.json"
ENTRY_CAPS: Final = {
    MANIFEST_ENTRY: 1 << 20,
    COMPONENT_ENTRY: 64 << 20,
    SIGNATURE_ENTRY: 4 << 10,
}
# The entries at their caps, plus a header and padding each and the end-of-archive blocks.
MAX_PACKAGE_BYTES: Final = sum(ENTRY_CAPS.values()) + 64 * 1024
_ORDER: Final = (MANIFEST_ENTRY, COMPONENT_ENTRY, SIGNATURE_ENTRY)
_WASM_MAGIC: Final = b"\0asm"


class PackageError(Exception):
    """A package that cannot be read or trusted; names the package file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class PackageRefused(PackageError):
    """A well-formed package the runtime will not load: names the package (name@version),
    the signing key's fingerprint and the reason."""

    def __init__(self, source: str, package: str, key: str | None, reason: str) -> None:
        self.package = package
        self.key = key
        signer = f"signed by key {key}" if key else "unsigned"
        super().__init__(source, f"refused {package}, {signer}: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Signature:
    """The detached signature over manifest.json."""

    key: str
    signature: bytes
    algorithm: str = ALGORITHM

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "algorithm": self.algorithm,
                "key": self.key,
                "signature": base64.b64encode(self.signature).decode("ascii"),
            }
        )


@dataclass(frozen=True, slots=True)
class PackageContents:
    """A package's entries, read and checked for form (not yet for trust)."""

    source: str
    manifest: ConnectorManifest
    manifest_bytes: bytes
    component: bytes
    signature: Signature | None

    @property
    def label(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"


@dataclass(frozen=True, slots=True)
class VerifiedPackage:
    """A package whose signature, key trust and digest were checked (or, only with the
    development flag, an unsigned one: `unsigned_dev` is then True and `fingerprint` None)."""

    source: str
    manifest: ConnectorManifest
    manifest_bytes: bytes
    component: bytes
    fingerprint: str | None
    component_sha256: str
    package_sha256: str
    unsigned_dev: bool = False

    @property
    def publisher(self) -> str:
        return self.manifest.publisher

    @property
    def label(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"


def package_filename(manifest: ConnectorManifest) -> str:
    """`<short name>-<version>.ffpkg`, e.g. `http-request-1.2.0.ffpkg`."""
    return f"{manifest.name.split('/', 1)[1]}-{manifest.version}{PACKAGE_SUFFIX}"


def manifest_bytes(manifest: ConnectorManifest) -> bytes:
    """The canonical bytes of a manifest: what is signed and what manifest.json holds."""
    return canonical_json(manifest.model_dump(mode="json", by_alias=True))


def _tar(entries: list[tuple[str, bytes]]) -> bytes:
    """A deterministic ustar archive: fixed order, mode, owner and time."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.type = tarfile.REGTYPE
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pack(manifest: ConnectorManifest, component: bytes) -> bytes:
    """An unsigned package: the manifest (pinned to this component's sha256) and component."""
    if not component.startswith(_WASM_MAGIC):
        raise PackageError(COMPONENT_ENTRY, "not a binary WebAssembly component (no \\0asm)")
    if len(component) > ENTRY_CAPS[COMPONENT_ENTRY]:
        raise PackageError(
            COMPONENT_ENTRY,
            f"{len(component)} bytes, over the cap of {ENTRY_CAPS[COMPONENT_ENTRY]} bytes",
        )
    digest = hashlib.sha256(component).hexdigest()
    pinned = manifest.model_copy(update={"component_sha256": digest})
    return _tar([(MANIFEST_ENTRY, manifest_bytes(pinned)), (COMPONENT_ENTRY, component)])


def sign_package(source: Path | bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The package with signature.json by `private_key` (an existing signature is replaced)."""
    contents = read_package(source)
    key = fingerprint(raw_public_key(private_key))
    signature = Signature(key, sign(private_key, contents.manifest_bytes))
    return _tar(
        [
            (MANIFEST_ENTRY, contents.manifest_bytes),
            (COMPONENT_ENTRY, contents.component),
            (SIGNATURE_ENTRY, signature.to_bytes()),
        ]
    )


def _read_source(source: Path | bytes) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        label = "package"
        data = source
    else:
        label = str(source)
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise PackageError(label, "no such file") from None
        except OSError as exc:
            raise PackageError(label, f"cannot open: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            # A FIFO or device would block or never end; only regular files are packages.
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise PackageError(label, "not a regular file")
            data = handle.read(MAX_PACKAGE_BYTES + 1)
    if len(data) > MAX_PACKAGE_BYTES:
        raise PackageError(label, f"larger than the package cap of {MAX_PACKAGE_BYTES} bytes")
    return label, data


def _check_member(label: str, info: tarfile.TarInfo, seen: dict[str, bytes]) -> None:
    name = info.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise PackageError(label, f"entry {name!r} has an absolute path")
    if ".." in PurePosixPath(name).parts or "\\" in name:
        raise PackageError(label, f"entry {name!r} has a path that leaves the package")
    if info.issym():
        raise PackageError(label, f"entry {name!r} is a symbolic link (to {info.linkname!r})")
    if info.islnk():
        raise PackageError(label, f"entry {name!r} is a hard link (to {info.linkname!r})")
    if info.ischr() or info.isblk() or info.isfifo():
        raise PackageError(label, f"entry {name!r} is a device or FIFO")
    if info.isdir():
        raise PackageError(label, f"entry {name!r} is a directory")
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise PackageError(label, f"entry {name!r} is not a regular file (type {info.type!r})")
    if name not in ENTRY_CAPS:
        raise PackageError(
            label,
            f"unexpected entry {name!r}; a package holds only "
            f"{MANIFEST_ENTRY}, {COMPONENT_ENTRY} and {SIGNATURE_ENTRY}",
        )
    if name in seen:
        raise PackageError(label, f"duplicate entry {name!r}")
    if info.size > ENTRY_CAPS[name]:
        raise PackageError(
            label, f"entry {name!r} is {info.size} bytes, over its cap of {ENTRY_CAPS[name]}"
        )


def _members(label: str, archive: tarfile.TarFile, data: bytes) -> dict[str, bytes]:
    seen: dict[str, bytes] = {}
    while (info := archive.next()) is not None:
        _check_member(label, info, seen)
        handle = archive.extractfile(info)
        body = handle.read(info.size) if handle is not None else b""
        if len(body) != info.size:
            raise PackageError(label, f"entry {info.name!r} is truncated")
        seen[info.name] = body
    # tarfile stops quietly at a damaged header; only end-of-archive zeros may follow.
    if any(data[archive.offset :]):
        raise PackageError(label, "unexpected data after the last entry")
    return seen


def _entries(label: str, data: bytes) -> dict[str, bytes]:
    """The archive's entries by name, each checked before its data is read."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            seen = _members(label, archive, data)
    except tarfile.TarError as exc:
        raise PackageError(label, f"not a readable uncompressed tar archive ({exc})") from None
    for name in (MANIFEST_ENTRY, COMPONENT_ENTRY):
        if name not in seen:
            raise PackageError(label, f"missing entry {name!r}")
    return seen


def _manifest(label: str, data: bytes) -> ConnectorManifest:
    if not is_canonical_json(data):
        raise PackageError(
            label,
            f"{MANIFEST_ENTRY} is not canonical JSON (UTF-8, sorted keys, no whitespace); "
            "the signature covers these exact bytes, so repack with `flowforge connector pack`",
        )
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise PackageError(label, f"{MANIFEST_ENTRY} is not a JSON object")
    try:
        manifest = parse_manifest(doc, MANIFEST_ENTRY)
    except ManifestError as exc:
        raise PackageError(label, str(exc)) from None
    if manifest.component_sha256 is None:
        raise PackageError(label, f"{MANIFEST_ENTRY} has no component_sha256")
    return manifest


def _signature(label: str, data: bytes) -> Signature:
    where = f"{SIGNATURE_ENTRY}"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PackageError(label, f"{where} is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"algorithm", "key", "signature"}:
        raise PackageError(label, f'{where}: expected {{"algorithm", "key", "signature"}}')
    algorithm, key, encoded = doc["algorithm"], doc["key"], doc["signature"]
    if algorithm != ALGORITHM:
        raise PackageError(label, f"{where}: unsupported algorithm {algorithm!r}")
    if not isinstance(key, str) or not is_fingerprint(key):
        raise PackageError(label, f"{where}: key {key!r} is not an ed25519:<hex> fingerprint")
    try:
        raw = base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        raise PackageError(label, f"{where}: signature is not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise PackageError(label, f"{where}: an Ed25519 signature is {SIGNATURE_BYTES} bytes")
    return Signature(key, raw)


def _read(label: str, data: bytes) -> PackageContents:
    entries = _entries(label, data)
    manifest = _manifest(label, entries[MANIFEST_ENTRY])
    signed = entries.get(SIGNATURE_ENTRY)
    signature = _signature(label, signed) if signed is not None else None
    component = entries[COMPONENT_ENTRY]
    contents = PackageContents(label, manifest, entries[MANIFEST_ENTRY], component, signature)
    digest = hashlib.sha256(component).hexdigest()
    if digest != manifest.component_sha256:
        raise PackageRefused(
            label,
            contents.label,
            signature.key if signature else None,
            f"{COMPONENT_ENTRY} has sha256 {digest} but the manifest pins "
            f"{manifest.component_sha256}: the component was changed after packing",
        )
    if not component.startswith(_WASM_MAGIC):
        raise PackageError(label, f"{COMPONENT_ENTRY} is not a binary WebAssembly component")
    return contents


def read_package(source: Path | bytes) -> PackageContents:
    """Read and check a package's form and digest; trust is `verify_package`'s job."""
    return _read(*_read_source(source))


def verify_package(
    source: Path | bytes, trust: TrustStore, *, allow_unsigned_dev: bool = False
) -> VerifiedPackage:
    """The package, if the runtime may load it: signed by a key trusted for the manifest's
    publisher and not revoked, over a manifest that pins this component.

    Raises PackageError for a malformed package and PackageRefused for one that is well
    formed but not trusted; both name the package, and a refusal the key and the reason.
    """
    label, data = _read_source(source)
    contents = _read(label, data)
    manifest = contents.manifest
    package_sha256 = hashlib.sha256(data).hexdigest()
    digest = manifest.component_sha256 or ""

    def accept(key: str | None) -> VerifiedPackage:
        return VerifiedPackage(
            label,
            manifest,
            contents.manifest_bytes,
            contents.component,
            key,
            digest,
            package_sha256,
            unsigned_dev=key is None,
        )

    def refuse(key: str | None, reason: str) -> PackageRefused:
        return PackageRefused(label, contents.label, key, reason)

    signature = contents.signature
    if signature is None:
        if allow_unsigned_dev:
            return accept(None)
        raise refuse(
            None,
            "the package is not signed; sign it with "
            "`flowforge connector sign PKG --key NAME` (unsigned builds run only with the "
            "explicit development flag)",
        )
    key = signature.key
    publisher = manifest.publisher
    revoked = trust.revoked(key)
    if revoked is not None:
        raise refuse(key, f"the key was revoked at {revoked.revoked_at}")
    entry = trust.trusted_for(key, publisher)
    if entry is None:
        others = sorted({k.publisher for k in trust.lookup(key)})
        where = f" (it is trusted only for {', '.join(others)})" if others else ""
        raise refuse(
            key,
            f"the key is not trusted for publisher {publisher}{where}; trust it with "
            f"`flowforge trust add '<public key line>' --publisher {publisher}` "
            "(the line the signer's `flowforge keys export NAME` prints)",
        )
    if not verify_signature(entry.public_key, signature.signature, contents.manifest_bytes):
        raise refuse(
            key,
            f"the signature does not verify over {MANIFEST_ENTRY} with this key: "
            "the manifest was changed after signing, or another key made the signature",
        )
    return accept(key)


__all__ = [
    "COMPONENT_ENTRY",
    "ENTRY_CAPS",
    "MANIFEST_ENTRY",
    "MAX_PACKAGE_BYTES",
    "PACKAGE_SUFFIX",
    "SIGNATURE_ENTRY",
    "PackageContents",
    "PackageError",
    "PackageRefused",
    "Signature",
    "VerifiedPackage",
    "manifest_bytes",
    "pack",
    "package_filename",
    "read_package",
    "sign_package",
    "verify_package",
]
