"""Alembic environment for the control plane: always run programmatically by
`flowforge.control.storage.db.open_engine` (through `flowforge.marketplace.db.migrate`), which
hands over an open connection, so there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from flowforge.control.storage.db import CONTROL_SCHEMA
from flowforge.control.storage.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the control plane's migrations run through flowforge.control.storage.db.open_engine, "
        "not the alembic command line"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=CONTROL_SCHEMA.version_table,
)
with context.begin_transaction():
    context.run_migrations()
