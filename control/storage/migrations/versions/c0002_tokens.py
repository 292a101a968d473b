"""API tokens (stored hashed), which project holds which workflow, and which run retries
which.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0002"
down_revision: str | None = "c0001"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
    )
    op.create_index("ix_api_tokens_project", "api_tokens", ["project"])
    op.create_table(
        "project_workflows",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column(
            "version", sa.String(64), sa.ForeignKey("workflow_versions.version"), primary_key=True
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("submitted_at", _TS, nullable=False),
        sa.Column("submitted_by", sa.String(255), nullable=False),
    )
    op.create_index(
        "ix_project_workflows_name", "project_workflows", ["project", "name", "submitted_at"]
    )
    op.create_table(
        "run_retries",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("retry_of", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_retries")
    op.drop_index("ix_project_workflows_name", table_name="project_workflows")
    op.drop_table("project_workflows")
    op.drop_index("ix_api_tokens_project", table_name="api_tokens")
    op.drop_table("api_tokens")
