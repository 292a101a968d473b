"""The registry as the `flowforge marketplace` commands use it, local or served.

`RegistryClient` is the part of `Registry` the browsing, publishing and installing
commands call. The in-process `Registry` satisfies it as it is; `RemoteRegistry` satisfies
it over `flowforge.v1.MarketplaceService`, turning statuses back into the registry's typed
errors, so each command has one code path and one way of reporting a refusal.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from flowforge.marketplace.errors import (
    Check,
    InvalidRequest,
    NotFound,
    PublishRefused,
    RegistryError,
)
from flowforge.marketplace.records import PackageInfo, PublishResult, SearchHit, VersionInfo
from flowforge.marketplace.semver import Range, Version, VersionError
from flowforge.marketplace.service import Capability
from flowforge.proto.v1 import marketplace_pb2 as pb

from .client import RpcFailure
from .marketplace_convert import (
    CHUNK_BYTES,
    PUBLISH_REFUSED,
    hit_from_proto,
    package_from_proto,
    published_from_proto,
)

if TYPE_CHECKING:
    from flowforge.proto.v1.marketplace_pb2_grpc import MarketplaceServiceAsyncStub

T = TypeVar("T")
_CHECKS: Final[frozenset[str]] = frozenset(
    ("package", "signature", "namespace", "version", "world", "examples", "semver")
)


class RegistryClient(Protocol):
    """What the marketplace commands need of a registry (`Registry` has all of it)."""

    async def search(
        self,
        query: str = "",
        language: str | None = None,
        min_score: int = 0,
        capability: Capability | None = None,
    ) -> list[SearchHit]: ...

    async def info(self, name: str, version: str | None = None) -> PackageInfo: ...

    async def publish(self, package: bytes, public_key: bytes | None = None) -> PublishResult: ...

    async def resolve(
        self, name: str, spec: str = "*", include_yanked: bool = False
    ) -> VersionInfo: ...

    async def download(self, name: str, spec: str = "*", include_yanked: bool = False) -> bytes: ...


class ApiError(RegistryError):
    """A call the server refused for a reason the registry does not have a type for
    (authentication, role, an unreachable server, a damaged transfer)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _refused_check(error: grpc.aio.AioRpcError) -> str:
    """The publishing check a refusal names in its ErrorInfo, or ""."""
    try:
        # AioRpcError has what from_call reads (code, details, trailing metadata).
        status = rpc_status.from_call(cast(grpc.Call, error))
    except ValueError:  # details that contradict the status: trust the status alone
        return ""
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason == PUBLISH_REFUSED:
            return str(info.metadata.get("check", ""))
    return ""


def _typed(error: grpc.aio.AioRpcError, server: str) -> RegistryError:
    """The registry error a status stands for (see marketplace_service's table), so a
    served registry's refusal reads as a local one's."""
    code, message = error.code(), error.details() or ""
    check = _refused_check(error)
    if check in _CHECKS:
        narrowed = cast(Check, check)
        return PublishRefused(narrowed, message.removeprefix(f"publish refused ({check} check): "))
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(message)
    failure = RpcFailure.of(error, server)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(failure.text())
    return ApiError(code, failure.text())


class RemoteRegistry:
    """A `RegistryClient` over MarketplaceService; `server` names it in errors."""

    def __init__(self, stub: MarketplaceServiceAsyncStub, server: str) -> None:
        self.stub = stub
        self.server = server

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            raise _typed(exc, self.server) from None

    async def search(
        self,
        query: str = "",
        language: str | None = None,
        min_score: int = 0,
        capability: Capability | None = None,
    ) -> list[SearchHit]:
        request = pb.SearchRequest(
            query=query, language=language or "", min_score=min_score, capability=capability or ""
        )
        response = await self._call(lambda: self.stub.Search(request))
        return [hit_from_proto(h) for h in response.hits]

    async def info(self, name: str, version: str | None = None) -> PackageInfo:
        request = pb.GetPackageRequest(name=name, version=version or "")
        return package_from_proto(await self._call(lambda: self.stub.Get(request)))

    async def publish(self, package: bytes, public_key: bytes | None = None) -> PublishResult:
        metadata = pb.PublishMetadata(
            size=len(package),
            sha256=hashlib.sha256(package).hexdigest(),
            public_key=public_key or b"",
        )

        async def parts() -> AsyncIterator[pb.PublishRequest]:
            yield pb.PublishRequest(metadata=metadata)
            for offset in range(0, len(package), CHUNK_BYTES):
                yield pb.PublishRequest(chunk=package[offset : offset + CHUNK_BYTES])

        return published_from_proto(await self._call(lambda: self.stub.Publish(parts())))

    async def resolve(
        self, name: str, spec: str = "*", include_yanked: bool = False
    ) -> VersionInfo:
        # There is no Resolve RPC: Get lists every version, and the range picks one here,
        # by the same Range rules the registry applies.
        try:
            wanted = Range.parse(spec)
        except VersionError as exc:
            raise InvalidRequest(str(exc)) from None
        versions = (await self.info(name)).versions
        usable = [v for v in versions if include_yanked or not v.yanked]
        best = wanted.best([Version.parse(v.version) for v in usable])
        if best is None:
            listed = ", ".join(v.version for v in versions)
            raise NotFound(f"no version of {name} matches {spec!r}; it has {listed}")
        return next(v for v in usable if Version.parse(v.version) == best)

    async def download(self, name: str, spec: str = "*", include_yanked: bool = False) -> bytes:
        """The package file; the server serves an exact version even when yanked (what a
        lock file needs) and skips yanked versions for ranges, whatever `include_yanked`."""
        request = pb.DownloadRequest(name=name, range=spec)

        async def receive() -> tuple[pb.DownloadChunk | None, bytes]:
            first: pb.DownloadChunk | None = None
            data = bytearray()
            async for chunk in self.stub.Download(request):
                first = first or chunk
                data += chunk.data
            return first, bytes(data)

        first, data = await self._call(receive)
        if first is None:
            raise ApiError(grpc.StatusCode.DATA_LOSS, f"{self.server} sent no data for {name}")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != first.size or digest != first.package_sha256:
            raise ApiError(
                grpc.StatusCode.DATA_LOSS,
                f"{name}@{first.version} arrived as {len(data)} bytes with sha256 {digest}; "
                f"the server announced {first.size} bytes with sha256 {first.package_sha256}",
            )
        return data


__all__ = ["ApiError", "RegistryClient", "RemoteRegistry"]
