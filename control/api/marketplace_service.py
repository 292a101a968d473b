"""`flowforge.v1.MarketplaceService`: the registry's service layer (`Registry`) over gRPC.

Every rule stays in `Registry`; this module checks the caller, moves bytes and maps the
registry's typed errors onto status codes:

| registry says | status |
| --- | --- |
| NotFound | NOT_FOUND |
| InvalidRequest | INVALID_ARGUMENT |
| PublishRefused, check `package` (malformed or changed archive) | INVALID_ARGUMENT |
| PublishRefused, check `version` (published with other content) | ALREADY_EXISTS |
| PublishRefused, check `namespace` (held by another key) | PERMISSION_DENIED |
| PublishRefused, any other check (signature, world, examples, semver) | FAILED_PRECONDITION |

Each refusal carries the registry's reason as the status message and google.rpc details
(`errors.py`): an ErrorInfo (reason `PUBLISH_REFUSED`, metadata `check`) naming the
publishing check that refused, then a BadRequest (which request field, what it must
hold) or a PreconditionFailure (type = the check, description = what to do).

Search, Get and Download need a VIEWER token, Publish a PUBLISHER token, each in the
token's own project (the registry is shared by every project of the server).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any, Final, NoReturn, cast

import grpc
from google.rpc import error_details_pb2

from flowforge.control.api.auth import Authority, Caller, Role
from flowforge.control.storage import Storage
from flowforge.marketplace.blobs import BlobError
from flowforge.marketplace.errors import InvalidRequest, NotFound, PublishRefused
from flowforge.marketplace.service import Capability, Registry
from flowforge.proto.v1 import marketplace_pb2 as pb
from flowforge.proto.v1 import marketplace_pb2_grpc as pb_grpc
from flowforge.runtime.package import MAX_PACKAGE_BYTES

from .errors import (
    ApiError,
    Context,
    abort,
    failed_precondition,
    field_violations,
    invalid_argument,
    not_found,
)
from .marketplace_convert import (
    CHUNK_BYTES,
    ERROR_DOMAIN,
    PUBLISH_REFUSED,
    hit_to_proto,
    package_to_proto,
    published_to_proto,
    serves_yanked,
)

_CAPABILITIES: Final = ("network", "secrets", "none")
_PUBLISH_CODES: Final = {
    "package": grpc.StatusCode.INVALID_ARGUMENT,
    "version": grpc.StatusCode.ALREADY_EXISTS,
    "namespace": grpc.StatusCode.PERMISSION_DENIED,
}


def _refused(exc: PublishRefused) -> ApiError:
    info = error_details_pb2.ErrorInfo(
        reason=PUBLISH_REFUSED, domain=ERROR_DOMAIN, metadata={"check": exc.check}
    )
    code = _PUBLISH_CODES.get(exc.check, grpc.StatusCode.FAILED_PRECONDITION)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        detail: Any = field_violations([("chunk", exc.reason)])
    else:
        detail = failed_precondition(exc.check, "package", exc.reason).details[0]
    return ApiError(code, str(exc), info, detail)


def _status(exc: Exception, name: str, field: str) -> ApiError:
    """The status a registry error maps to (see the module docstring); `name` is the
    package asked for, `field` the request field an InvalidRequest is about."""
    if isinstance(exc, PublishRefused):
        return _refused(exc)
    if isinstance(exc, NotFound):
        return not_found("package", name, str(exc))
    if isinstance(exc, InvalidRequest):
        return invalid_argument(field, str(exc))
    if isinstance(exc, BlobError):
        # The registry's own storage is damaged: nothing the client can fix.
        return ApiError(grpc.StatusCode.DATA_LOSS, str(exc))
    raise TypeError(f"no status for {type(exc).__name__}") from exc


async def _bad(context: Context, field: str, description: str) -> NoReturn:
    await abort(context, invalid_argument(field, description))


class MarketplaceServicer(pb_grpc.MarketplaceServiceServicer):
    def __init__(
        self,
        registry: Registry,
        authority: Authority,
        storage: Storage,
        max_package_bytes: int = MAX_PACKAGE_BYTES,
    ) -> None:
        self.registry = registry
        self.authority = authority
        self.storage = storage
        self.max_package_bytes = max_package_bytes

    async def _caller(self, context: Context, needed: Role) -> Caller:
        return await self.authority.check(context, None, needed)

    async def Search(self, request: pb.SearchRequest, context: Context) -> pb.SearchResponse:
        await self._caller(context, Role.VIEWER)
        if request.capability and request.capability not in _CAPABILITIES:
            await _bad(
                context,
                "capability",
                f"{request.capability!r} is not one of network, secrets, none (or empty)",
            )
        if not 0 <= request.min_score <= 100:
            await _bad(context, "min_score", f"{request.min_score} is not in 0..100")
        if request.limit < 0:
            await _bad(context, "limit", f"{request.limit} is negative; 0 means no limit")
        capability = cast(Capability | None, request.capability or None)
        hits = await self.registry.search(
            request.query, request.language or None, request.min_score, capability
        )
        if request.limit:
            hits = hits[: request.limit]
        return pb.SearchResponse(hits=[hit_to_proto(h) for h in hits])

    async def Get(self, request: pb.GetPackageRequest, context: Context) -> pb.PackageInfo:
        await self._caller(context, Role.VIEWER)
        if not request.name:
            await _bad(context, "name", "give the package's name, publisher/name")
        try:
            info = await self.registry.info(request.name, request.version or None)
        except (NotFound, InvalidRequest) as exc:
            await abort(context, _status(exc, request.name, "version"))
        return package_to_proto(info)

    async def Publish(
        self, request_iterator: AsyncIterator[pb.PublishRequest], context: Context
    ) -> pb.PublishResponse:
        caller = await self._caller(context, Role.PUBLISHER)
        metadata, data = await self._receive(request_iterator, context)
        public_key = bytes(metadata.public_key) or None
        if public_key is not None and len(public_key) != 32:
            await _bad(
                context,
                "metadata.public_key",
                f"{len(public_key)} bytes; give the raw 32-byte Ed25519 public key, or none",
            )
        try:
            result = await self.registry.publish(data, public_key)
        except PublishRefused as exc:
            await abort(context, _refused(exc))
        await self.storage.audit.append(
            caller.actor,
            "marketplace.publish",
            f"{result.name}@{result.version}",
            {
                "package_sha256": result.package_sha256,
                "signer": result.info.signer,
                "created": result.created,
            },
        )
        return published_to_proto(result)

    async def _receive(
        self, request_iterator: AsyncIterator[pb.PublishRequest], context: Context
    ) -> tuple[pb.PublishMetadata, bytes]:
        """The metadata message and the package bytes, checked against it: no more than
        the declared size (itself under the cap) is ever held in memory."""
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "metadata":
            await _bad(
                context,
                "metadata",
                "a Publish stream starts with its metadata (size, sha256), then chunks",
            )
        metadata = first.metadata
        cap = self.max_package_bytes
        if not 0 < metadata.size <= cap:
            await _bad(
                context,
                "metadata.size",
                f"the package is declared as {metadata.size} bytes; this registry accepts "
                f"packages of 1 to {cap} bytes",
            )
        if len(metadata.sha256) != 64:
            await _bad(
                context, "metadata.sha256", "give the package file's sha256 as 64 hex digits"
            )
        received = bytearray()
        async for message in request_iterator:
            if message.WhichOneof("part") != "chunk":
                await _bad(context, "metadata", "sent twice; after it come only chunks")
            received += message.chunk
            if len(received) > metadata.size:
                await _bad(
                    context,
                    "chunk",
                    f"more bytes arrived than the {metadata.size} that metadata.size declares",
                )
        if len(received) != metadata.size:
            await _bad(
                context,
                "chunk",
                f"the stream ended after {len(received)} of the {metadata.size} bytes that "
                "metadata.size declares",
            )
        digest = hashlib.sha256(received).hexdigest()
        if digest != metadata.sha256.lower():
            await _bad(
                context,
                "metadata.sha256",
                f"the package arrived with sha256 {digest}, not the {metadata.sha256} "
                "declared: it was changed in transit, or the metadata is wrong",
            )
        return metadata, bytes(received)

    async def Download(
        self, request: pb.DownloadRequest, context: Context
    ) -> AsyncIterator[pb.DownloadChunk]:
        await self._caller(context, Role.VIEWER)
        if not request.name:
            await _bad(context, "name", "give the package's name, publisher/name")
        spec = request.range.strip() or "*"
        try:
            picked = await self.registry.resolve(
                request.name, spec, include_yanked=serves_yanked(spec)
            )
            # The exact version just picked (yanked allowed: the range rule was applied).
            data = await self.registry.download(
                request.name, f"={picked.version}", include_yanked=True
            )
        except (NotFound, InvalidRequest, BlobError) as exc:
            await abort(context, _status(exc, request.name, "range"))
        yield pb.DownloadChunk(
            name=picked.name,
            version=picked.version,
            package_sha256=picked.package_sha256,
            size=len(data),
            data=data[:CHUNK_BYTES],
        )
        for offset in range(CHUNK_BYTES, len(data), CHUNK_BYTES):
            yield pb.DownloadChunk(data=data[offset : offset + CHUNK_BYTES])


def add_marketplace_service(
    server: grpc.aio.Server,
    registry: Registry,
    authority: Authority,
    storage: Storage,
    *,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
) -> MarketplaceServicer:
    """Register MarketplaceService on `server`; returns the servicer (for tests)."""
    servicer = MarketplaceServicer(registry, authority, storage, max_package_bytes)
    pb_grpc.add_MarketplaceServiceServicer_to_server(servicer, server)
    return servicer


__all__ = [
    "MarketplaceServicer",
    "add_marketplace_service",
]
