"""MarketplaceService on a real server (marketplace only, a free port) with real clients:
the raw stub (to see status codes and details) and `RemoteRegistry`, the client the CLI
uses. Registry on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2, status_pb2

from flowforge.control.api import marketplace_service
from flowforge.control.api.client import connect
from flowforge.control.api.marketplace_client import ApiError, RemoteRegistry
from flowforge.control.api.marketplace_convert import CHUNK_BYTES, PUBLISH_REFUSED
from flowforge.control.api.server import ApiServer, ServerConfig
from flowforge.marketplace.authorization import yank_authorization
from flowforge.marketplace.errors import NotFound, PublishRefused
from flowforge.marketplace.service import Registry
from flowforge.proto.v1 import marketplace_pb2 as pb
from flowforge.proto.v1 import marketplace_pb2_grpc as pb_grpc
from flowforge.runtime.canonical import canonical_json
from flowforge.runtime.manifest import ConnectorManifest
from flowforge.runtime.package import MAX_PACKAGE_BYTES
from flowforge.runtime.signing import fingerprint, raw_public_key
from tests.control.api.conftest import Tokens, bearer, make_tokens
from tests.marketplace.conftest import MakePackage, build_encode, package_maker
from tests.pg import BACKENDS, database_for

if TYPE_CHECKING:
    from flowforge.proto.v1.marketplace_pb2_grpc import MarketplaceServiceAsyncStub


@pytest.fixture(scope="module")
def encode() -> tuple[ConnectorManifest, bytes]:
    return build_encode()


@pytest.fixture
def make(encode: tuple[ConnectorManifest, bytes]) -> MakePackage:
    return package_maker(encode)


@pytest.fixture
def owner() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(params=BACKENDS)
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_for(request.param, tmp_path, "registry") as url:
        yield url


@dataclass
class Market:
    server: ApiServer
    registry: Registry
    stub: MarketplaceServiceAsyncStub  # no token of its own: each call passes one
    tokens: Tokens
    workspace: Path

    def auth(self, who: str = "publisher") -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens.of(who))

    @asynccontextmanager
    async def remote(self, who: str = "publisher") -> AsyncIterator[RemoteRegistry]:
        """The CLI's client: `connect` (token on every call) and RemoteRegistry."""
        token = self.tokens.of(who)
        async with connect(self.server.address, token, workspace=self.workspace) as api:
            yield RemoteRegistry(api.marketplace, api.address)

    async def publish_raw(self, parts: list[pb.PublishRequest], who: str = "publisher") -> Any:
        async def stream() -> AsyncIterator[pb.PublishRequest]:
            for part in parts:
                yield part

        return await self.stub.Publish(stream(), metadata=self.auth(who))


def upload(
    package: bytes, key: Ed25519PrivateKey | None = None, chunk: int = CHUNK_BYTES
) -> list[pb.PublishRequest]:
    """A well-formed Publish stream for `package`, in chunks of `chunk` bytes."""
    metadata = pb.PublishMetadata(
        size=len(package),
        sha256=hashlib.sha256(package).hexdigest(),
        public_key=raw_public_key(key) if key is not None else b"",
    )
    chunks = [package[i : i + chunk] for i in range(0, len(package), chunk)]
    return [pb.PublishRequest(metadata=metadata), *(pb.PublishRequest(chunk=c) for c in chunks)]


@pytest.fixture
async def market(workspace: Path, registry_url: str, tmp_path: Path) -> AsyncIterator[Market]:
    config = ServerConfig(
        workspace=workspace,
        listen="127.0.0.1:0",
        with_worker=False,
        services=frozenset({"marketplace"}),
        registry=registry_url,
        registry_blobs=tmp_path / "blobs",
    )
    server = await ApiServer.open(config)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        assert server.registry is not None
        yield Market(
            server,
            server.registry,
            pb_grpc.MarketplaceServiceStub(channel),
            await make_tokens(server),
            workspace,
        )
    finally:
        await channel.close()
        await server.close()


def details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The google.rpc details of a failed call by type name: ErrorInfo, BadRequest, ..."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert isinstance(raw, bytes), f"no details on {error.code()}: {error.details()}"
    found: dict[str, Any] = {}
    for detail in status_pb2.Status.FromString(raw).details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ResourceInfo,
        ):
            if detail.Is(cast(Any, kind.DESCRIPTOR)):
                message = kind()
                detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    return found


def entries(package: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def tar(*members: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def refused(
    market: Market, parts: list[pb.PublishRequest], code: grpc.StatusCode, who: str = "publisher"
) -> grpc.aio.AioRpcError:
    """Publish `parts`, expect `code`, and a registry left exactly as it was."""
    before = await market.registry.counts()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await market.publish_raw(parts, who)
    assert caught.value.code() == code, caught.value.details()
    assert await market.registry.counts() == before
    return caught.value


async def test_publish_search_get_download_through_the_cli_client(
    market: Market, make: MakePackage, owner: Ed25519PrivateKey
) -> None:
    package = make(owner)
    async with market.remote("publisher") as remote:
        published = await remote.publish(package, raw_public_key(owner))
        assert published.created and published.package_sha256 == hashlib.sha256(package).hexdigest()
        again = await remote.publish(package)  # the same bytes: a no-op success
        assert not again.created
    # The records come through the API exactly as the registry made them.
    local = await market.registry.info("acme/encode")
    async with market.remote("viewer") as remote:
        assert (await remote.info("acme/encode")).to_json() == local.to_json()
        [hit] = await remote.search("base64", language="zig", capability="none")
        assert hit == (await market.registry.search("base64"))[0]
        assert await remote.search("base64", language="python") == []
        assert (await remote.resolve("acme/encode", "^1")).version == "1.0.0"
        assert await remote.download("acme/encode", "^1") == package
        with pytest.raises(NotFound, match="no package 'acme/nothing'"):
            await remote.info("acme/nothing")
        with pytest.raises(NotFound, match=r"\^2"):
            await remote.download("acme/encode", "^2")
    assert (await market.registry.info("acme/encode")).selected.downloads == 1

    # Who published is in the audit log: the token, never the package bytes.
    audited = await market.server.storage.audit.list(action="marketplace.publish")
    assert len(audited) == 2  # both calls, the second with created False
    entry = audited[-1]
    assert entry.details["created"] and not audited[0].details["created"]
    assert entry.target == "acme/encode@1.0.0" and entry.actor.startswith("token:")
    assert entry.details["package_sha256"] == published.package_sha256


async def test_publish_and_download_stream_in_chunks_with_the_metadata_first(
    market: Market, make: MakePackage, owner: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = make(owner)
    small = 16 * 1024  # the encode package is ~130 KB: several chunks each way
    assert (await market.publish_raw(upload(package, owner, chunk=small))).created
    monkeypatch.setattr(marketplace_service, "CHUNK_BYTES", small)
    chunks = [
        c
        async for c in market.stub.Download(
            pb.DownloadRequest(name="acme/encode"), metadata=market.auth("viewer")
        )
    ]
    first = chunks[0]
    assert (first.name, first.version, first.size) == ("acme/encode", "1.0.0", len(package))
    assert first.package_sha256 == hashlib.sha256(package).hexdigest()
    assert all(len(c.data) == small for c in chunks[:-1])
    assert len(chunks) == -(-len(package) // small) > 1
    assert all(not c.name and not c.size for c in chunks[1:])
    assert b"".join(c.data for c in chunks) == package


async def test_a_yanked_version_is_served_only_when_asked_for_exactly(
    market: Market, make: MakePackage, owner: Ed25519PrivateKey
) -> None:
    await market.registry.publish(make(owner), raw_public_key(owner))
    await market.registry.yank(
        "acme/encode", "1.0.0", yank_authorization(owner, "acme/encode", "1.0.0")
    )
    async with market.remote("viewer") as remote:
        with pytest.raises(NotFound, match=r"yanked: 1\.0\.0"):
            await remote.download("acme/encode", "^1")
        # A lock file pins the exact version: that keeps working.
        assert await remote.download("acme/encode", "=1.0.0", include_yanked=True)
        assert (await remote.resolve("acme/encode", "1.0.0", include_yanked=True)).yanked


async def test_refusals_map_to_status_codes_with_the_check_named(
    market: Market, make: MakePackage, owner: Ed25519PrivateKey
) -> None:
    good = make(owner)
    await market.registry.publish(good, raw_public_key(owner))
    parts = entries(good)

    # A changed component byte: the archive no longer matches its manifest.
    component = bytearray(parts["component.wasm"])
    component[len(component) // 2] ^= 0x01
    tampered = tar(
        ("manifest.json", parts["manifest.json"]),
        ("component.wasm", bytes(component)),
        ("signature.json", parts["signature.json"]),
    )
    error = await refused(market, upload(tampered), grpc.StatusCode.INVALID_ARGUMENT)
    found = details(error)
    assert found["ErrorInfo"].reason == PUBLISH_REFUSED
    assert found["ErrorInfo"].metadata["check"] == "package"
    assert "changed after packing" in found["BadRequest"].field_violations[0].description

    # A changed manifest byte: the signature no longer verifies.
    manifest = json.loads(parts["manifest.json"])
    manifest["version"] = "1.0.1"
    forged = tar(
        ("manifest.json", canonical_json(manifest)),
        ("component.wasm", parts["component.wasm"]),
        ("signature.json", parts["signature.json"]),
    )
    error = await refused(market, upload(forged), grpc.StatusCode.FAILED_PRECONDITION)
    assert "does not verify" in (error.details() or "")
    assert details(error)["PreconditionFailure"].violations[0].type == "signature"

    # The same version with other content.
    other = make(owner, description="Encode and decode text, changed after release")
    error = await refused(market, upload(other), grpc.StatusCode.ALREADY_EXISTS)
    assert "already published with other content" in (error.details() or "")
    assert details(error)["ErrorInfo"].metadata["check"] == "version"

    # A second key in a namespace the first key holds.
    intruder = Ed25519PrivateKey.generate()
    error = await refused(
        market, upload(make(intruder, version="1.0.1"), intruder), grpc.StatusCode.PERMISSION_DENIED
    )
    assert f"held by key {fingerprint(raw_public_key(owner))}" in (error.details() or "")
    assert "marketplace approve" in (error.details() or "")
    assert details(error)["ErrorInfo"].metadata["check"] == "namespace"

    # The CLI's client reads the same refusal as the local registry's typed error.
    async with market.remote() as remote:
        with pytest.raises(PublishRefused) as caught:
            await remote.publish(make(intruder, version="1.0.1"), raw_public_key(intruder))
    assert caught.value.check == "namespace" and caught.value.reason.startswith("namespace 'acme'")


async def test_uploads_are_checked_against_their_metadata_and_the_cap(
    market: Market, make: MakePackage, owner: Ed25519PrivateKey
) -> None:
    package = make(owner)
    [metadata, *chunks] = upload(package, owner)
    assert len(chunks) == 1  # the encode package is smaller than a chunk
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    def field(error: grpc.aio.AioRpcError) -> str:
        return str(details(error)["BadRequest"].field_violations[0].field)

    # Declared over the cap: refused before a byte is read.
    oversized = pb.PublishMetadata(size=MAX_PACKAGE_BYTES + 1, sha256=metadata.metadata.sha256)
    error = await refused(market, [pb.PublishRequest(metadata=oversized), *chunks], invalid)
    assert field(error) == "metadata.size" and str(MAX_PACKAGE_BYTES) in (error.details() or "")
    # More bytes than declared, fewer, other bytes than the sha256, no metadata first.
    short = pb.PublishMetadata(size=len(package) - 1, sha256=metadata.metadata.sha256)
    assert field(await refused(market, [pb.PublishRequest(metadata=short), *chunks], invalid)) == (
        "chunk"
    )
    cut = pb.PublishRequest(chunk=package[:-1])
    assert field(await refused(market, [metadata, cut], invalid)) == "chunk"
    wrong = pb.PublishMetadata(size=len(package), sha256="0" * 64)
    error = await refused(market, [pb.PublishRequest(metadata=wrong), *chunks], invalid)
    assert field(error) == "metadata.sha256" and "changed in transit" in (error.details() or "")
    assert field(await refused(market, chunks, invalid)) == "metadata"
    assert field(await refused(market, [metadata, metadata, *chunks], invalid)) == "metadata"
    # And the well-formed stream is accepted.
    response = await market.publish_raw([metadata, *chunks])
    assert response.created and response.info.gate.installable


async def test_roles_viewer_reads_publisher_publishes_no_token_is_unauthenticated(
    market: Market, make: MakePackage, owner: Ed25519PrivateKey
) -> None:
    package = upload(make(owner), owner)
    error = await refused(market, package, grpc.StatusCode.PERMISSION_DENIED, who="viewer")
    assert "publisher" in (error.details() or "")
    await refused(market, package, grpc.StatusCode.UNAUTHENTICATED, who="revoked")
    assert (await market.publish_raw(package, who="publisher")).created

    search = pb.SearchRequest(query="base64")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await market.stub.Search(search)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for who in ("viewer", "operator", "publisher", "admin", "other_admin"):
        hits = (await market.stub.Search(search, metadata=market.auth(who))).hits
        assert [h.name for h in hits] == ["acme/encode"], who
    # The CLI's client turns an auth refusal into an ApiError naming the fix.
    async with market.remote("viewer") as remote:
        with pytest.raises(ApiError) as refusal:
            await remote.publish(make(owner, version="1.0.1"))
    assert refusal.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "token create" in str(refusal.value)


async def test_bad_requests_name_the_field(market: Market) -> None:
    cases: list[tuple[Any, str]] = [
        (
            market.stub.Search(pb.SearchRequest(capability="disk"), metadata=market.auth()),
            "capability",
        ),
        (market.stub.Search(pb.SearchRequest(min_score=101), metadata=market.auth()), "min_score"),
        (market.stub.Search(pb.SearchRequest(limit=-1), metadata=market.auth()), "limit"),
        (market.stub.Get(pb.GetPackageRequest(), metadata=market.auth()), "name"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value)["BadRequest"].field_violations[0].field == field
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await market.stub.Get(pb.GetPackageRequest(name="acme/none"), metadata=market.auth())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(caught.value)["ResourceInfo"].resource_name == "acme/none"
    download = market.stub.Download(
        pb.DownloadRequest(name="acme/none", range="^x"), metadata=market.auth()
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [c async for c in download]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)["BadRequest"].field_violations[0].field == "range"
