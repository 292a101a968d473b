"""Alembic environment for the registry: always run programmatically by
`flowforge.marketplace.db.migrate`, which hands over an open connection (the async engine's
connection, seen through `run_sync`), so there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from flowforge.marketplace.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the registry's migrations run through flowforge.marketplace.db.migrate, "
        "not the alembic command line"
    )
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
