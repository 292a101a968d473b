"""Fixtures for the trigger tests: a storage on SQLite and PostgreSQL, an injectable clock,
a `start_run` that records what it was asked, workflows stored with triggers, and (from
the scheduler's tests) a workspace of signed packages with a real embedded engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowforge.control.scheduler.embedded import EmbeddedEngine
from flowforge.control.storage import Storage, StoredVersion
from flowforge.control.triggers import StartRun, TriggerRefused, host_start_run
from flowforge.runtime.canonical import canonical_json
from tests.control.scheduler.conftest import (
    OpenEngine,
    Packages,
    config_dir,
    echo_component,
    open_engine,
    packages,
    spin_component,
    until,
)
from tests.pg import BACKENDS, database_for

NATS_URL = os.environ.get("FLOWFORGE_TEST_NATS_URL", "nats://127.0.0.1:4222")

# Re-exported fixtures (pytest finds them by name in this module).
__all__ = [
    "NATS_URL",
    "Call",
    "FakeClock",
    "OpenEngine",
    "Packages",
    "Recorder",
    "config_dir",
    "echo_component",
    "engine_start_run",
    "open_engine",
    "packages",
    "spin_component",
    "store_workflow",
    "until",
]


class FakeClock:
    """A clock that moves only when the test says; sleepers wake when it passes them.
    Start it at a stored version's `created_at`: ticks before that never fire."""

    def __init__(self, at: datetime) -> None:
        self._now = at
        self._moved = asyncio.Condition()
        self.sleepers: list[datetime] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        async with self._moved:
            self.sleepers.append(when)
            try:
                await self._moved.wait_for(lambda: self._now >= when)
            finally:
                self.sleepers.remove(when)

    async def advance_to(self, at: datetime) -> None:
        async with self._moved:
            self._now = at
            self._moved.notify_all()

    def idle(self, sleepers: int) -> bool:
        """`sleepers` tasks are asleep, each until a time still ahead: they have done
        everything that was due."""
        return len(self.sleepers) == sleepers and all(w > self._now for w in self.sleepers)


@dataclass(frozen=True)
class Call:
    project: str
    workflow: str
    version: str
    input: Any
    trigger: dict[str, Any]


@dataclass
class Recorder:
    """A `start_run` that records each call and hands out run ids (or refuses)."""

    calls: list[Call] = field(default_factory=list)
    refuse: str | None = None

    async def __call__(
        self, project: str, workflow: str, version: str, input: Any, trigger: dict[str, Any]
    ) -> str:
        if self.refuse is not None:
            raise TriggerRefused(self.refuse)
        self.calls.append(Call(project, workflow, version, input, trigger))
        return f"run-{len(self.calls)}"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_for(request.param, tmp_path, "flowforge") as url:
        yield url


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    store = await Storage.open(db_url)
    try:
        yield store
    finally:
        await store.close()


async def store_workflow(
    storage: Storage, name: str, triggers: list[dict[str, Any]]
) -> StoredVersion:
    """Store a version holding these triggers in the canonical shape (what the trigger
    manager reads)."""
    doc = {
        "format": 1,
        # Sorted as the canonical form sorts them: a trigger's index is its place here.
        "spec": {
            "name": name,
            "triggers": sorted(triggers, key=canonical_json),
        },
        "pins": {},
    }
    canonical = canonical_json(doc)
    version, _new = await storage.versions.put(
        name, hashlib.sha256(canonical).hexdigest(), canonical
    )
    return version


def engine_start_run(engine: EmbeddedEngine, seen: list[dict[str, Any]]) -> StartRun:
    """What a host passes (`host_start_run`), noting each trigger document on the way."""
    host = host_start_run(engine)

    async def start(
        project: str, workflow: str, version: str, input: Any, trigger: dict[str, Any]
    ) -> str:
        seen.append(trigger)
        return await host(project, workflow, version, input, trigger)

    return start


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
