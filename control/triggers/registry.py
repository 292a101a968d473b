"""What is registered: the cron, webhook and NATS triggers of the latest version of every
submitted workflow, and the project each workflow belongs to."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeAlias

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Connection

from flowforge.control.storage import Storage, StoredVersion
from flowforge.control.storage.projects import PROJECT_WORKFLOWS
from flowforge.control.workflow.spec import CronTrigger, NatsTrigger, Trigger, WebhookTrigger

from .store import CronKey

log = logging.getLogger("flowforge.triggers")

DEFAULT_PROJECT: Final = "default"

FiringTrigger: TypeAlias = CronTrigger | WebhookTrigger | NatsTrigger

StartRun: TypeAlias = Callable[[str, str, str, Any, dict[str, Any]], Awaitable[str]]
"""`start_run(project, workflow, version, input, trigger) -> run id`, given by the host. It
starts a run as the run API does (input validation, audit); `trigger` says what fired:
`{"type": "cron", "schedule", "timezone", "tick", ...}`, `{"type": "webhook", "path"}` or
`{"type": "nats", "subject"}`."""


class TriggerRefused(Exception):
    """Raised by a host's `start_run` when it refuses the run (e.g. invalid input): the
    webhook answers 422 with the message, and NATS replies with it."""


_TRIGGERS: Final = TypeAdapter(list[Trigger])


@dataclass(frozen=True)
class RegisteredTrigger:
    """One firing trigger of the latest version of a workflow in a project."""

    project: str
    workflow: str
    version: str
    index: int  # its place in the version's canonical (sorted) trigger list
    spec: FiringTrigger
    version_created_at: datetime

    @property
    def cron_key(self) -> CronKey:
        return CronKey(self.project, self.workflow, self.index)

    @property
    def label(self) -> str:
        return f"{self.project}/{self.workflow} trigger {self.index} ({self.spec.type})"


def triggers_of(version: StoredVersion) -> list[Trigger]:
    """The triggers in a stored version's canonical form (none when it holds no spec)."""
    try:
        doc = json.loads(version.canonical)
        raw = doc["spec"]["triggers"] if isinstance(doc, dict) and "spec" in doc else []
        return _TRIGGERS.validate_python(raw)
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning(
            "workflow %s version %s: unreadable triggers: %s", version.name, version.version, exc
        )
        return []


@dataclass(frozen=True)
class _Held:
    project: str
    name: str
    version: str
    since: datetime


def _held(conn: Connection) -> list[_Held]:
    """The newest version of each workflow in each project (by when it was submitted)."""
    table = PROJECT_WORKFLOWS
    query = select(table.c.project, table.c.name, table.c.version, table.c.submitted_at)
    newest: dict[tuple[str, str], _Held] = {}
    for row in conn.execute(query.order_by(table.c.submitted_at, table.c.version)):
        newest[(row.project, row.name)] = _Held(
            row.project, row.name, row.version, row.submitted_at
        )
    return list(newest.values())


async def load_triggers(storage: Storage) -> list[RegisteredTrigger]:
    """Every cron, webhook and NATS trigger of the newest version of each workflow, in
    each project that holds it (by when the project was given that version). A workflow
    no project holds (stored without the API, e.g. by an embedded run) counts as project
    "default"'s, with its newest stored version."""
    held = await storage.db.transaction(_held)
    claimed = {h.name for h in held}
    for name in await storage.versions.names():
        if name not in claimed:
            latest = await storage.versions.latest(name)
            if latest is not None:
                held.append(_Held(DEFAULT_PROJECT, name, latest.version, latest.created_at))
    found: list[RegisteredTrigger] = []
    for h in sorted(held, key=lambda h: (h.project, h.name)):
        version = await storage.versions.get(h.version)
        for index, spec in enumerate(triggers_of(version)):
            if isinstance(spec, CronTrigger | WebhookTrigger | NatsTrigger):
                found.append(RegisteredTrigger(h.project, h.name, h.version, index, spec, h.since))
    return found


__all__ = [
    "DEFAULT_PROJECT",
    "FiringTrigger",
    "RegisteredTrigger",
    "StartRun",
    "TriggerRefused",
    "load_triggers",
    "triggers_of",
]
