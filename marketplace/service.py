"""The registry's service layer: every marketplace operation, behind one async class.

The CLI calls it in-process; the gRPC MarketplaceService will wrap it. Inputs and
outputs are plain values and dataclasses (`records`), errors are typed (`errors`).

Publishing runs its checks in order, each refusal naming its check, and changes nothing
until all have passed: (1) the package reads and its signature verifies under the
signer's key, and that key may publish in the namespace (the first key to publish under a
namespace holds it; others need the holder's approval), (2) the version is new (the same
bytes again succeed and change nothing), (3) the component targets the world, (4) the
manifest examples pass in the sandbox, (5) breaking schema changes since the previous
version come with a major version. Only then is the blob written and the rows committed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flowforge.runtime.manifest import ConnectorManifest, parse_manifest
from flowforge.runtime.package import PackageContents, PackageError, verify_package
from flowforge.runtime.signing import fingerprint, is_fingerprint
from flowforge.runtime.trust import TrustStore

from . import publishing, scoring
from .authorization import Authorization, is_valid
from .blobs import BlobStore, sha256
from .bundle import BundleEntry, read_bundle, write_bundle
from .db import make_engine, migrate
from .errors import BundleError, InvalidRequest, NotFound, PublishRefused, Unauthorized
from .models import Key, Namespace, NamespaceKey, Package, PackageVersion
from .records import ImportResult, PackageInfo, PublishResult, SearchHit, VersionInfo
from .semver import Range, Version, VersionError

Capability = Literal["network", "secrets", "none"]


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _manifest(row: PackageVersion) -> ConnectorManifest:
    return parse_manifest(json.loads(row.manifest), f"{row.package}@{row.version}")


def _info(row: PackageVersion) -> VersionInfo:
    caps = json.loads(row.manifest).get("capabilities", {})
    return VersionInfo(
        name=row.package,
        version=row.version,
        description=row.description,
        language=row.language,
        license=row.license,
        world=row.world,
        package_sha256=row.package_sha256,
        component_sha256=row.component_sha256,
        package_bytes=row.package_bytes,
        component_bytes=row.component_bytes,
        signer=row.signer,
        published_at=_utc(row.published_at),
        yanked=row.yanked,
        network=tuple(caps.get("network", [])),
        secrets=tuple(caps.get("secrets", [])),
        score=scoring.Score.from_json(json.loads(row.breakdown)),
        gate=scoring.gate(row.world),
        downloads=row.downloads,
    )


def _range(text: str) -> Range:
    try:
        return Range.parse(text)
    except VersionError as exc:
        raise InvalidRequest(str(exc)) from None


@dataclass(frozen=True, slots=True)
class _Admission:
    """What check (1)'s database half and check (2) found."""

    signer: str
    public_key: bytes
    key_known: bool
    key_first_seen: datetime
    namespace_exists: bool
    role: str
    existing: PackageVersion | None
    previous: PackageVersion | None


class Registry:
    """The marketplace registry over one database and one blob directory."""

    def __init__(self, engine: AsyncEngine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._publishing = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, blob_dir: Path) -> Registry:
        """Connect and bring the schema up to date (migrations run every open; cheap
        when nothing is pending)."""
        engine = make_engine(url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, BlobStore(blob_dir))

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- publishing -----------------------------------------------------------------

    async def publish(self, package: bytes, public_key: bytes | None = None) -> PublishResult:
        """Run the publishing checks and, when all pass, store the package.

        `public_key` (raw 32 bytes) is needed the first time the registry sees the signing
        key; after that the registry uses its own record and a different key is refused.
        Raises PublishRefused naming the check that failed.
        """
        async with self._publishing:
            contents = publishing.read(package)
            digest = sha256(package)
            async with self._sessions() as session:
                admission = await self._admit(session, contents, public_key, digest)
            if admission.existing is not None:
                return PublishResult(
                    contents.manifest.name,
                    contents.manifest.version,
                    digest,
                    False,
                    _info(admission.existing),
                )
            run = await asyncio.to_thread(publishing.run_in_sandbox, contents)
            previous = _manifest(admission.previous) if admission.previous else None
            publishing.check_semver(contents.manifest, previous)
            age = (_now() - admission.key_first_seen).total_seconds() / 86400
            score = scoring.score(
                contents.manifest,
                publishing.measurements(contents, run, len(package)),
                scoring.KeyFacts(admission.signer, max(age, 0.0), admission.role),
                previous.version if previous else None,
            )
            row = await self._store(contents, package, digest, public_key, score)
            return PublishResult(row.package, row.version, digest, True, _info(row))

    async def _admit(
        self,
        session: AsyncSession,
        contents: PackageContents,
        offered_key: bytes | None,
        digest: str,
    ) -> _Admission:
        manifest = contents.manifest
        signature = contents.signature
        if signature is None:
            raise PublishRefused(
                "signature",
                f"{contents.label} is not signed; sign it with "
                "`flowforge connector sign PKG --key NAME` before publishing",
            )
        signer = signature.key
        if offered_key is not None and fingerprint(offered_key) != signer:
            raise PublishRefused(
                "signature",
                f"{contents.label} is signed by key {signer}, but the public key given is "
                f"{fingerprint(offered_key)}",
            )
        known = await session.get(Key, signer)
        public_key = known.public_key if known is not None else offered_key
        if public_key is None:
            raise PublishRefused(
                "signature",
                f"this registry has not seen key {signer} before; give its public key "
                "(`--public-key` with the line `flowforge keys export NAME` prints)",
            )
        publishing.check_signature(contents, public_key)
        namespace = await session.get(Namespace, manifest.publisher)
        role = "owner"
        if namespace is not None:
            member = await session.get(NamespaceKey, (manifest.publisher, signer))
            if member is None:
                raise PublishRefused(
                    "namespace",
                    f"namespace {manifest.publisher!r} is held by key {namespace.owner}; key "
                    f"{signer} may publish there once the holder approves it: "
                    f"`flowforge marketplace approve {manifest.publisher} {signer} --key OWNER`",
                )
            role = "owner" if namespace.owner == signer else "approved"
        rows = (
            await session.scalars(
                select(PackageVersion).where(PackageVersion.package == manifest.name)
            )
        ).all()
        existing = next((r for r in rows if r.version == manifest.version), None)
        if existing is not None and existing.package_sha256 != digest:
            raise PublishRefused(
                "version",
                f"{contents.label} is already published with other content (sha256 "
                f"{existing.package_sha256}); a published version never changes: "
                "bump the version and publish again",
            )
        new = Version.parse(manifest.version)
        older = [r for r in rows if Version.parse(r.version) < new]
        previous = max(older, key=lambda r: Version.parse(r.version), default=None)
        return _Admission(
            signer,
            public_key,
            known is not None,
            _utc(known.first_seen) if known is not None else _now(),
            namespace is not None,
            role,
            existing,
            previous,
        )

    async def _store(
        self,
        contents: PackageContents,
        package: bytes,
        digest: str,
        offered_key: bytes | None,
        score: scoring.Score,
    ) -> PackageVersion:
        manifest = contents.manifest
        had_blob = self.blobs.has(digest)
        self.blobs.put(package)
        try:
            async with self._sessions() as session, session.begin():
                # Re-checked inside the transaction: another process may have published.
                admission = await self._admit(session, contents, offered_key, digest)
                if admission.existing is not None:
                    raise PublishRefused("version", f"{contents.label} was published concurrently")
                now = _now()
                if not admission.key_known:
                    session.add(
                        Key(
                            fingerprint=admission.signer,
                            public_key=admission.public_key,
                            first_seen=now,
                        )
                    )
                if not admission.namespace_exists:
                    session.add(
                        Namespace(name=manifest.publisher, owner=admission.signer, created_at=now)
                    )
                    session.add(
                        NamespaceKey(
                            namespace=manifest.publisher,
                            fingerprint=admission.signer,
                            approved_by=admission.signer,
                            approved_at=now,
                        )
                    )
                if await session.get(Package, manifest.name) is None:
                    session.add(
                        Package(
                            name=manifest.name,
                            namespace=manifest.publisher,
                            created_at=now,
                            downloads=0,
                        )
                    )
                await session.flush()
                row = PackageVersion(
                    package=manifest.name,
                    version=manifest.version,
                    description=manifest.description,
                    language=manifest.language,
                    license=manifest.license,
                    world=manifest.world,
                    manifest=contents.manifest_bytes.decode("utf-8"),
                    package_sha256=digest,
                    component_sha256=manifest.component_sha256 or "",
                    package_bytes=len(package),
                    component_bytes=len(contents.component),
                    signer=admission.signer,
                    published_at=now,
                    yanked=False,
                    yanked_at=None,
                    score=score.total,
                    breakdown=json.dumps(score.to_json()),
                    downloads=0,
                )
                session.add(row)
        except (PublishRefused, IntegrityError) as exc:
            if not had_blob:
                self.blobs.delete(digest)
            if isinstance(exc, IntegrityError):
                raise PublishRefused(
                    "version", f"{contents.label} was published concurrently"
                ) from None
            raise
        except BaseException:
            if not had_blob:
                self.blobs.delete(digest)
            raise
        return row

    # -- reading --------------------------------------------------------------------

    async def _versions(self, session: AsyncSession, name: str) -> list[PackageVersion]:
        rows = (
            await session.scalars(select(PackageVersion).where(PackageVersion.package == name))
        ).all()
        if not rows:
            raise NotFound(f"no package {name!r} in this registry (try `marketplace search`)")
        return sorted(rows, key=lambda r: Version.parse(r.version), reverse=True)

    async def search(
        self,
        query: str = "",
        language: str | None = None,
        min_score: int = 0,
        capability: Capability | None = None,
    ) -> list[SearchHit]:
        """Packages whose newest non-yanked version matches every word of `query` (in its
        name or description), the language, the minimum score and the capability (one it
        declares; `none` for neither network nor secrets). Best score first."""
        words = query.lower().split()
        async with self._sessions() as session:
            rows = (
                await session.scalars(select(PackageVersion).where(~PackageVersion.yanked))
            ).all()
            downloads = dict((await session.execute(select(Package.name, Package.downloads))).all())
        newest: dict[str, PackageVersion] = {}
        for row in rows:
            best = newest.get(row.package)
            if best is None or Version.parse(row.version) > Version.parse(best.version):
                newest[row.package] = row
        hits: list[SearchHit] = []
        for row in newest.values():
            info = _info(row)
            text = f"{row.package} {row.description}".lower()
            if not all(w in text for w in words):
                continue
            if language and row.language != language:
                continue
            if row.score < min_score:
                continue
            if capability == "network" and not info.network:
                continue
            if capability == "secrets" and not info.secrets:
                continue
            if capability == "none" and (info.network or info.secrets):
                continue
            hits.append(
                SearchHit(
                    row.package,
                    row.version,
                    row.description,
                    row.language,
                    row.score,
                    info.gate.installable,
                    info.network,
                    info.secrets,
                    int(downloads.get(row.package, 0)),
                )
            )
        return sorted(hits, key=lambda h: (-h.score, h.name))

    async def info(self, name: str, version: str | None = None) -> PackageInfo:
        """A package's versions and keys, and one version in full: `version`, else the
        newest non-yanked one (else the newest)."""
        async with self._sessions() as session:
            rows = await self._versions(session, name)
            package = await session.get(Package, name)
            assert package is not None  # versions exist only under their package row
            namespace = await session.get(Namespace, package.namespace)
            assert namespace is not None
            keys = (
                await session.scalars(
                    select(NamespaceKey.fingerprint).where(NamespaceKey.namespace == namespace.name)
                )
            ).all()
        if version is None:
            selected = next((r for r in rows if not r.yanked), rows[0])
        else:
            found = next((r for r in rows if r.version == version), None)
            if found is None:
                listed = ", ".join(r.version for r in rows)
                raise NotFound(f"{name} has no version {version} (it has {listed})")
            selected = found
        return PackageInfo(
            name,
            namespace.name,
            namespace.owner,
            tuple(sorted(k for k in keys if k != namespace.owner)),
            package.downloads,
            tuple(_info(r) for r in rows),
            _info(selected),
        )

    async def resolve(
        self, name: str, spec: str = "*", include_yanked: bool = False
    ) -> VersionInfo:
        """The highest version of `name` matching the range `spec` (yanked ones skipped
        unless `include_yanked`, as a lock file's pin may need)."""
        wanted = _range(spec)
        async with self._sessions() as session:
            rows = await self._versions(session, name)
        usable = [r for r in rows if include_yanked or not r.yanked]
        best = wanted.best([Version.parse(r.version) for r in usable])
        if best is None:
            yanked = [r.version for r in rows if r.yanked]
            note = f" (yanked: {', '.join(yanked)})" if yanked else ""
            listed = ", ".join(r.version for r in rows)
            raise NotFound(f"no version of {name} matches {spec!r}; it has {listed}{note}")
        return _info(next(r for r in usable if Version.parse(r.version) == best))

    async def download(self, name: str, spec: str = "*", include_yanked: bool = False) -> bytes:
        """The package file of the version `resolve` picks; counts the download."""
        info = await self.resolve(name, spec, include_yanked)
        data = await asyncio.to_thread(self.blobs.get, info.package_sha256)
        async with self._sessions() as session, session.begin():
            row = (
                await session.scalars(
                    select(PackageVersion).where(
                        PackageVersion.package == name, PackageVersion.version == info.version
                    )
                )
            ).one()
            row.downloads += 1
            package = await session.get(Package, name)
            if package is not None:
                package.downloads += 1
        return data

    # -- changes by signed request ---------------------------------------------------------

    async def _key(self, session: AsyncSession, auth: Authorization) -> bytes:
        known = await session.get(Key, auth.key)
        if known is None:
            raise Unauthorized(
                f"key {auth.key} is unknown to this registry; only keys that have "
                "published here can sign requests"
            )
        return known.public_key

    async def yank(self, name: str, version: str, auth: Authorization) -> VersionInfo:
        """Mark a version yanked (install skips it; a lock file pinning it still works).
        Signed by the namespace owner's key or an approved key. Yanking twice is a no-op."""
        async with self._sessions() as session, session.begin():
            rows = await self._versions(session, name)
            row = next((r for r in rows if r.version == version), None)
            if row is None:
                raise NotFound(f"{name} has no version {version}")
            public_key = await self._key(session, auth)
            if not is_valid(auth, public_key, "yank", name=name, version=version):
                raise Unauthorized(f"the yank request's signature by {auth.key} does not verify")
            namespace = name.split("/", 1)[0]
            if await session.get(NamespaceKey, (namespace, auth.key)) is None:
                raise Unauthorized(
                    f"key {auth.key} may not yank in namespace {namespace!r}: only its owner "
                    "or a key the owner approved"
                )
            if not row.yanked:
                row.yanked = True
                row.yanked_at = _now()
            return _info(row)

    async def approve_key(self, namespace: str, key_fingerprint: str, auth: Authorization) -> None:
        """Let `key_fingerprint` publish in `namespace`; signed by the namespace owner's key.
        Approving a key again changes nothing."""
        if not is_fingerprint(key_fingerprint):
            raise InvalidRequest(f"{key_fingerprint!r} is not an ed25519:<hex> fingerprint")
        async with self._sessions() as session, session.begin():
            held = await session.get(Namespace, namespace)
            if held is None:
                raise NotFound(
                    f"no namespace {namespace!r}: the first key to publish under it will hold it"
                )
            public_key = await self._key(session, auth)
            if not is_valid(
                auth, public_key, "approve-key", namespace=namespace, fingerprint=key_fingerprint
            ):
                raise Unauthorized(f"the approval's signature by {auth.key} does not verify")
            if auth.key != held.owner:
                raise Unauthorized(
                    f"only namespace {namespace!r}'s owner ({held.owner}) may approve keys; "
                    f"the request was signed by {auth.key}"
                )
            if await session.get(NamespaceKey, (namespace, key_fingerprint)) is None:
                session.add(
                    NamespaceKey(
                        namespace=namespace,
                        fingerprint=key_fingerprint,
                        approved_by=auth.key,
                        approved_at=_now(),
                    )
                )

    # -- bundles ------------------------------------------------------------------------

    async def export_bundle(self, path: Path, names: Sequence[str] = ()) -> list[VersionInfo]:
        """Write every version (yanked ones flagged) of `names`, or of every package."""
        async with self._sessions() as session:
            query = select(PackageVersion)
            if names:
                query = query.where(PackageVersion.package.in_(list(names)))
            rows = list((await session.scalars(query)).all())
        missing = sorted(set(names) - {r.package for r in rows})
        if missing:
            raise NotFound(f"no package {missing[0]!r} in this registry")
        rows.sort(key=lambda r: (r.package, Version.parse(r.version)))
        entries = [
            BundleEntry(
                r.package, r.version, r.package_sha256, r.yanked, self.blobs.get(r.package_sha256)
            )
            for r in rows
        ]
        await asyncio.to_thread(write_bundle, path, entries)
        return [_info(r) for r in rows]

    async def import_bundle(self, path: Path, trust: TrustStore) -> list[ImportResult]:
        """Import a bundle: every package must verify against `trust` first (else nothing
        is imported); then each goes through the publishing checks, oldest first."""
        entries = await asyncio.to_thread(read_bundle, path)
        keys: dict[str, bytes] = {}
        for entry in entries:
            label = f"{entry.name}@{entry.version}"
            try:
                verified = verify_package(entry.data, trust)
            except PackageError as exc:
                raise BundleError(f"{path}: {label}: {exc.reason}; nothing was imported") from None
            if verified.label != label:
                raise BundleError(
                    f"{path}: the index says {label} but the package is {verified.label}"
                )
            assert verified.fingerprint is not None  # verify_package refuses unsigned ones
            trusted = trust.trusted_for(verified.fingerprint, verified.publisher)
            assert trusted is not None
            keys[entry.package_sha256] = trusted.public_key
        results: list[ImportResult] = []
        for entry in sorted(entries, key=lambda e: (e.name, Version.parse(e.version))):
            try:
                published = await self.publish(entry.data, keys[entry.package_sha256])
            except PublishRefused as exc:
                results.append(ImportResult(entry.name, entry.version, "refused", str(exc)))
                continue
            if entry.yanked:
                await self._mark_yanked(entry.name, entry.version)
            outcome = "published" if published.created else "present"
            results.append(ImportResult(entry.name, entry.version, outcome))
        return results

    async def _mark_yanked(self, name: str, version: str) -> None:
        async with self._sessions() as session, session.begin():
            row = (
                await session.scalars(
                    select(PackageVersion).where(
                        PackageVersion.package == name, PackageVersion.version == version
                    )
                )
            ).one()
            if not row.yanked:
                row.yanked, row.yanked_at = True, _now()

    # -- housekeeping -------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Rows per table and stored blobs: what a refused publish must leave unchanged."""
        tables: Iterable[Any] = (Key, Namespace, NamespaceKey, Package, PackageVersion)
        out: dict[str, int] = {}
        async with self._sessions() as session:
            for model in tables:
                out[model.__tablename__] = int(
                    await session.scalar(select(func.count()).select_from(model)) or 0
                )
        out["blobs"] = len(self.blobs.digests())
        return out


__all__ = ["Capability", "Registry"]
