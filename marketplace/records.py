"""The registry's typed results: what the service layer returns (and gRPC will carry)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from .scoring import Gate, Score


@dataclass(frozen=True, slots=True)
class VersionInfo:
    name: str
    version: str
    description: str
    language: str
    license: str
    world: str
    package_sha256: str
    component_sha256: str
    package_bytes: int
    component_bytes: int
    signer: str
    published_at: datetime
    yanked: bool
    network: tuple[str, ...]
    secrets: tuple[str, ...]
    score: Score
    gate: Gate
    downloads: int

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["published_at"] = self.published_at.isoformat()
        doc["network"] = list(self.network)
        doc["secrets"] = list(self.secrets)
        doc["score"] = self.score.to_json()
        return doc


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """A package, its namespace's keys, every version (newest first) and the one asked for."""

    name: str
    namespace: str
    owner: str
    approved_keys: tuple[str, ...]
    downloads: int
    versions: tuple[VersionInfo, ...]
    selected: VersionInfo

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "owner": self.owner,
            "approved_keys": list(self.approved_keys),
            "downloads": self.downloads,
            "versions": [
                {
                    "version": v.version,
                    "yanked": v.yanked,
                    "score": v.score.total,
                    "published_at": v.published_at.isoformat(),
                }
                for v in self.versions
            ],
            "selected": self.selected.to_json(),
        }


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A package's newest non-yanked version, as search lists it."""

    name: str
    version: str
    description: str
    language: str
    score: int
    installable: bool
    network: tuple[str, ...]
    secrets: tuple[str, ...]
    downloads: int

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["network"] = list(self.network)
        doc["secrets"] = list(self.secrets)
        return doc


@dataclass(frozen=True, slots=True)
class PublishResult:
    """A published version; `created` is False when the same bytes were already there."""

    name: str
    version: str
    package_sha256: str
    created: bool
    info: VersionInfo

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "package_sha256": self.package_sha256,
            "created": self.created,
            "info": self.info.to_json(),
        }


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One package of an imported bundle: published, already present, or refused (why)."""

    name: str
    version: str
    outcome: str  # "published" | "present" | "refused"
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["ImportResult", "PackageInfo", "PublishResult", "SearchHit", "VersionInfo"]
