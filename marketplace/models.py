"""The registry's metadata tables (SQLAlchemy 2). The schema itself is made by the Alembic
migrations in `migrations/versions/`, which must be kept in step with these classes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Namespace(Base):
    """A publisher namespace (`acme` in `acme/http-request`), held by the first key to
    publish under it."""

    __tablename__ = "namespaces"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("keys.fingerprint"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Key(Base):
    """A signing key the registry has seen, and when it first saw it."""

    __tablename__ = "keys"

    fingerprint: Mapped[str] = mapped_column(String(80), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NamespaceKey(Base):
    """A key that may publish in a namespace: its owner, or one the owner approved."""

    __tablename__ = "namespace_keys"

    namespace: Mapped[str] = mapped_column(ForeignKey("namespaces.name"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(80), primary_key=True)
    approved_by: Mapped[str] = mapped_column(String(80))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Package(Base):
    """A connector name; its versions are `PackageVersion` rows."""

    __tablename__ = "packages"

    name: Mapped[str] = mapped_column(String(127), primary_key=True)
    namespace: Mapped[str] = mapped_column(ForeignKey("namespaces.name"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)


class PackageVersion(Base):
    """One published version: immutable except for `yanked` and the download count."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("package", "version", name="uq_versions_package_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package: Mapped[str] = mapped_column(ForeignKey("packages.name"), index=True)
    version: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(32))
    license: Mapped[str] = mapped_column(String(255))
    world: Mapped[str] = mapped_column(String(255))
    manifest: Mapped[str] = mapped_column(Text)  # the canonical manifest JSON, as signed
    package_sha256: Mapped[str] = mapped_column(String(64), index=True)
    component_sha256: Mapped[str] = mapped_column(String(64))
    package_bytes: Mapped[int] = mapped_column(BigInteger)
    component_bytes: Mapped[int] = mapped_column(BigInteger)
    signer: Mapped[str] = mapped_column(ForeignKey("keys.fingerprint"))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    breakdown: Mapped[str] = mapped_column(Text)  # JSON: the score's factors and measurements
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)


__all__ = ["Base", "Key", "Namespace", "NamespaceKey", "Package", "PackageVersion"]
