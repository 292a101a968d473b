"""Fixtures for the audit and artefact tests: the storage fixtures of tests/control/storage
(SQLite and PostgreSQL) and the scheduler's workspace of signed packages."""

from __future__ import annotations

from tests.control.scheduler.conftest import (
    config_dir,
    echo_component,
    open_engine,
    packages,
    spin_component,
)
from tests.control.storage.conftest import db_url, storage, version

__all__ = [
    "config_dir",
    "db_url",
    "echo_component",
    "open_engine",
    "packages",
    "spin_component",
    "storage",
    "version",
]
