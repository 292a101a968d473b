"""The marketplace on the wire: its records as `flowforge.v1` messages and back, and the
chunk size and error details both ends use.

Both directions live here so that the server and the CLI's gRPC client agree by
construction: a record sent through the API comes back equal to the one the registry made
(the CLI renders the same records whether the registry is local or served).
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from flowforge.marketplace.records import PackageInfo, PublishResult, SearchHit, VersionInfo
from flowforge.marketplace.scoring import Factor, Gate, Score
from flowforge.marketplace.semver import Range, VersionError
from flowforge.proto.v1 import marketplace_pb2 as pb

CHUNK_BYTES: Final = 1024 * 1024  # of a Publish or Download stream's messages
# A refused publish carries google.rpc.ErrorInfo(reason=PUBLISH_REFUSED, domain=ERROR_DOMAIN,
# metadata={"check": <the publishing check>}), so a client can tell the checks apart.
PUBLISH_REFUSED: Final = "PUBLISH_REFUSED"
ERROR_DOMAIN: Final = "flowforge.dev"


def serves_yanked(spec: str) -> bool:
    """Download's rule: an exact version (`1.2.3` or `=1.2.3`) is served even when yanked,
    because a lock file pins exact versions and a yanked version keeps working for those
    who locked it; a range skips yanked versions."""
    try:
        return Range.parse(spec).is_exact
    except VersionError:
        return False  # the registry refuses the range itself, with its own message


def score_to_proto(score: Score) -> pb.Score:
    return pb.Score(
        total=score.total,
        factors=[
            pb.Factor(
                name=f.name,
                points=f.points,
                weight=f.weight,
                reason=f.reason,
                measured_json=json.dumps(f.measured, sort_keys=True),
            )
            for f in score.factors
        ],
    )


def score_from_proto(message: pb.Score) -> Score:
    return Score(
        message.total,
        tuple(
            Factor(f.name, f.points, f.weight, f.reason, json.loads(f.measured_json or "{}"))
            for f in message.factors
        ),
    )


def version_to_proto(info: VersionInfo) -> pb.VersionInfo:
    published = Timestamp()
    published.FromDatetime(info.published_at)
    return pb.VersionInfo(
        name=info.name,
        version=info.version,
        description=info.description,
        language=info.language,
        license=info.license,
        world=info.world,
        package_sha256=info.package_sha256,
        component_sha256=info.component_sha256,
        package_bytes=info.package_bytes,
        component_bytes=info.component_bytes,
        signer=info.signer,
        published_at=published,
        yanked=info.yanked,
        network=list(info.network),
        secrets=list(info.secrets),
        score=score_to_proto(info.score),
        gate=pb.Gate(installable=info.gate.installable, reason=info.gate.reason),
        downloads=info.downloads,
    )


def version_from_proto(message: pb.VersionInfo) -> VersionInfo:
    return VersionInfo(
        name=message.name,
        version=message.version,
        description=message.description,
        language=message.language,
        license=message.license,
        world=message.world,
        package_sha256=message.package_sha256,
        component_sha256=message.component_sha256,
        package_bytes=message.package_bytes,
        component_bytes=message.component_bytes,
        signer=message.signer,
        published_at=message.published_at.ToDatetime(tzinfo=UTC),
        yanked=message.yanked,
        network=tuple(message.network),
        secrets=tuple(message.secrets),
        score=score_from_proto(message.score),
        gate=Gate(message.gate.installable, message.gate.reason),
        downloads=message.downloads,
    )


def package_to_proto(info: PackageInfo) -> pb.PackageInfo:
    return pb.PackageInfo(
        name=info.name,
        namespace=info.namespace,
        owner=info.owner,
        approved_keys=list(info.approved_keys),
        downloads=info.downloads,
        versions=[version_to_proto(v) for v in info.versions],
        selected=version_to_proto(info.selected),
    )


def package_from_proto(message: pb.PackageInfo) -> PackageInfo:
    return PackageInfo(
        message.name,
        message.namespace,
        message.owner,
        tuple(message.approved_keys),
        message.downloads,
        tuple(version_from_proto(v) for v in message.versions),
        version_from_proto(message.selected),
    )


def hit_to_proto(hit: SearchHit) -> pb.SearchHit:
    return pb.SearchHit(
        name=hit.name,
        version=hit.version,
        description=hit.description,
        language=hit.language,
        score=hit.score,
        installable=hit.installable,
        network=list(hit.network),
        secrets=list(hit.secrets),
        downloads=hit.downloads,
    )


def hit_from_proto(message: pb.SearchHit) -> SearchHit:
    return SearchHit(
        message.name,
        message.version,
        message.description,
        message.language,
        message.score,
        message.installable,
        tuple(message.network),
        tuple(message.secrets),
        message.downloads,
    )


def published_to_proto(result: PublishResult) -> pb.PublishResponse:
    return pb.PublishResponse(
        name=result.name,
        version=result.version,
        package_sha256=result.package_sha256,
        created=result.created,
        info=version_to_proto(result.info),
    )


def published_from_proto(message: pb.PublishResponse) -> PublishResult:
    return PublishResult(
        message.name,
        message.version,
        message.package_sha256,
        message.created,
        version_from_proto(message.info),
    )


__all__ = [
    "CHUNK_BYTES",
    "ERROR_DOMAIN",
    "PUBLISH_REFUSED",
    "hit_from_proto",
    "hit_to_proto",
    "package_from_proto",
    "package_to_proto",
    "published_from_proto",
    "published_to_proto",
    "score_from_proto",
    "score_to_proto",
    "serves_yanked",
    "version_from_proto",
    "version_to_proto",
]
