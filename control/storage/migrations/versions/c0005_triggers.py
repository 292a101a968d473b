"""Trigger state: when each cron trigger last fired, webhook deliveries seen.

Revision ID: c0005
Revises: c0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0005"
down_revision: str | None = "c0004"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trigger_cron_ticks",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(255), primary_key=True),
        sa.Column("trigger_index", sa.Integer, primary_key=True),
        sa.Column("schedule", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("last_tick", _TS, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "trigger_webhook_deliveries",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("seen_at", _TS, nullable=False),
    )
    op.create_index("ix_trigger_webhook_deliveries_seen", "trigger_webhook_deliveries", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_trigger_webhook_deliveries_seen", "trigger_webhook_deliveries")
    op.drop_table("trigger_webhook_deliveries")
    op.drop_table("trigger_cron_ticks")
