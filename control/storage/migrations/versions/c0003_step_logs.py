"""Log lines of runs: connector, worker and scheduler lines per step.

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0003"
down_revision: str | None = "c0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "step_logs",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("span_id", sa.String(16), nullable=True),
    )
    op.create_index("ix_step_logs_run_step_seq", "step_logs", ["run_id", "step", "seq"])


def downgrade() -> None:
    op.drop_index("ix_step_logs_run_step_seq", table_name="step_logs")
    op.drop_table("step_logs")
