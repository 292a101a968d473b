"""The `start_run` a host hands the trigger manager: a run started as `RunService.Start`
starts one (the version from the catalog, its worker pools ensured, the scheduler's input
validation), with a "run.start" audit entry whose actor names the trigger."""

from __future__ import annotations

from typing import Any, Protocol

from flowforge.control.scheduler import Scheduler
from flowforge.control.storage import Storage
from flowforge.control.storage.audit import RUN_START
from flowforge.control.workflow import WorkflowVersion

from .registry import StartRun


class RunHost(Protocol):
    """What runs the runs: the API server's engine, embedded or distributed."""

    storage: Storage
    scheduler: Scheduler
    dev: bool

    def ensure_pools(self, version: WorkflowVersion) -> None: ...


def actor_of(trigger: dict[str, Any]) -> str:
    """The audit actor of a triggered run, e.g. `trigger:webhook(/hooks/orders)`."""
    kind = str(trigger.get("type", "unknown"))
    what = {"cron": "schedule", "webhook": "path", "nats": "subject"}.get(kind)
    return f"trigger:{kind}({trigger.get(what, '')})" if what else f"trigger:{kind}"


def host_start_run(host: RunHost) -> StartRun:
    async def start_run(
        project: str, workflow: str, version: str, input: Any, trigger: dict[str, Any]
    ) -> str:
        planned = await host.scheduler.catalog.get(version)
        host.ensure_pools(planned)
        run_id = await host.scheduler.start_run(
            planned, input, project, unsigned_dev=host.dev, trigger=trigger
        )
        details = {"project": project, "workflow": workflow, "version": version, "trigger": trigger}
        await host.storage.audit.append(actor_of(trigger), RUN_START, f"run:{run_id}", details)
        return run_id

    return start_run


__all__ = ["RunHost", "actor_of", "host_start_run"]
