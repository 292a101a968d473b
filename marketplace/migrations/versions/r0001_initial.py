"""The registry's first schema: keys, namespaces, packages and versions.

Revision ID: r0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("fingerprint", sa.String(80), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
    )
    op.create_table(
        "namespaces",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("owner", sa.String(80), sa.ForeignKey("keys.fingerprint"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "namespace_keys",
        sa.Column("namespace", sa.String(63), sa.ForeignKey("namespaces.name"), primary_key=True),
        sa.Column("fingerprint", sa.String(80), primary_key=True),
        sa.Column("approved_by", sa.String(80), nullable=False),
        sa.Column("approved_at", _TS, nullable=False),
    )
    op.create_table(
        "packages",
        sa.Column("name", sa.String(127), primary_key=True),
        sa.Column("namespace", sa.String(63), sa.ForeignKey("namespaces.name"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("downloads", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("package", sa.String(127), sa.ForeignKey("packages.name"), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("license", sa.String(255), nullable=False),
        sa.Column("world", sa.String(255), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("package_sha256", sa.String(64), nullable=False),
        sa.Column("component_sha256", sa.String(64), nullable=False),
        sa.Column("package_bytes", sa.BigInteger, nullable=False),
        sa.Column("component_bytes", sa.BigInteger, nullable=False),
        sa.Column("signer", sa.String(80), sa.ForeignKey("keys.fingerprint"), nullable=False),
        sa.Column("published_at", _TS, nullable=False),
        sa.Column("yanked", sa.Boolean, nullable=False),
        sa.Column("yanked_at", _TS, nullable=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("breakdown", sa.Text, nullable=False),
        sa.Column("downloads", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("package", "version", name="uq_versions_package_version"),
    )
    op.create_index("ix_versions_package", "versions", ["package"])
    op.create_index("ix_versions_package_sha256", "versions", ["package_sha256"])


def downgrade() -> None:
    op.drop_table("versions")
    op.drop_table("packages")
    op.drop_table("namespace_keys")
    op.drop_table("namespaces")
    op.drop_table("keys")
