"""The triggers' tables (made by migration c0005): when each cron trigger last fired, and
the signed webhook deliveries seen within the replay window."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Index, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from flowforge.control.storage.models import Base, UTCDateTime


class CronTickRow(Base):
    """The latest tick a cron trigger was claimed for. A manager fires a tick only after
    moving `last_tick` forward to it in one compare-and-set, so two managers, or one that
    restarted, never fire the same tick twice."""

    __tablename__ = "trigger_cron_ticks"

    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(255), primary_key=True)
    # The trigger's place in the version's canonical (sorted) trigger list.
    trigger_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    last_tick: Mapped[datetime] = mapped_column(UTCDateTime)
    # The run started for `last_tick`; empty while it starts, or when the start failed.
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDeliveryRow(Base):
    """A timestamped, signed webhook delivery, kept for the replay window so the same
    signed request cannot start a second run."""

    __tablename__ = "trigger_webhook_deliveries"
    __table_args__ = (Index("ix_trigger_webhook_deliveries_seen", "seen_at"),)

    # sha256 hex over the path and the signature header.
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):  # declarative classes always map onto one Table
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


CRON_TICKS: Final = _table(CronTickRow)
WEBHOOK_DELIVERIES: Final = _table(WebhookDeliveryRow)
