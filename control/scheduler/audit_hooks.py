"""What the scheduler records for operators and auditors besides the run's events: each
step attempt's input and output as artefacts, and every secret read a step is given.

Artefacts are made before a decision is stored and go into its append, with its events
(`Scheduler._drain`, `start_run`); a secret read is audited when the task is sealed, after
(`_publish_task`). Artefacts are captured with the step's granted secret values masked, so
no value reaches the artefact tables; the audit entry of a read names the secrets, never
their values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flowforge.control.secrets import SecretError, SecretStore
from flowforge.control.storage import EventType, Storage, StorageError
from flowforge.control.storage.artefacts import Kind, NewArtefact, artefact_body
from flowforge.control.storage.audit import SECRET_READ

from .runs import ActiveRun, Batch, Dispatch

log = logging.getLogger("flowforge.scheduler")

SCHEDULER_ACTOR = "scheduler"


async def record_secret_read(
    storage: Storage, run: ActiveRun, dispatch: Dispatch, grants: Mapping[str, str]
) -> None:
    """Audit that the scheduler unsealed the project secrets `grants` names for one step
    attempt (raises StorageError when it cannot be recorded: the task is then not sent)."""
    details = {
        "run": run.id,
        "step": dispatch.step,
        "attempt": dispatch.attempt,
        "project": run.project,
        "workflow": run.version.name,
        "secrets": sorted(set(grants.values())),
    }
    await storage.audit.append(SCHEDULER_ACTOR, SECRET_READ, f"run:{run.id}", details)


async def step_artefacts(
    secrets: SecretStore | None, run: ActiveRun, batch: Batch
) -> list[NewArtefact]:
    """The artefacts of a decision, for its append: the inputs of its dispatches and the
    outputs of its successes, each with the step's secret values masked.

    A failure is logged, not raised, and keeps none: the run must go on whether or not its
    artefacts can be kept."""
    wanted: list[tuple[str, int, Kind, object]] = [
        (d.step, d.attempt, "input", d.input) for d in batch.dispatches
    ]
    for event in batch.events:
        if event.type is EventType.STEP_SUCCEEDED:
            data = event.data
            wanted.append((str(data["step"]), int(data["attempt"]), "output", data.get("output")))
    if not wanted:
        return []
    try:
        masks: dict[str, dict[str, str] | None] = {}
        items: list[NewArtefact] = []
        for step, attempt, kind, value in wanted:
            if step not in masks:
                masks[step] = await _secret_values(secrets, run, step)
            mask = masks[step]
            if mask is None:
                continue  # the step's secrets could not be read to mask them: keep nothing
            items.append(NewArtefact(step, attempt, kind, artefact_body(value, mask)))
        return items
    except (StorageError, ValueError) as exc:
        log.warning("run %s: could not capture step artefacts: %s", run.id, exc)
        return []


async def _secret_values(
    secrets: SecretStore | None, run: ActiveRun, step_id: str
) -> dict[str, str] | None:
    """The values to mask in the step's artefacts ({} when it has no secrets); None when
    it has secrets whose values cannot be read. Those already read for the step (for its
    input artefact, or sealed for its task) are used as they are."""
    sealed = run.secret_masks.get(step_id)
    if sealed is not None:
        return sealed
    planned = run.version.steps.get(step_id)
    grants = dict(planned.grants.secrets) if planned is not None else {}
    if not grants:
        return {}
    if secrets is None:
        return None
    try:
        values = await secrets.resolve(run.project, grants)
    except SecretError as exc:
        log.warning("run %s: step %s artefacts not kept: %s", run.id, step_id, exc)
        return None
    run.secret_masks[step_id] = values
    return values


__all__ = ["SCHEDULER_ACTOR", "record_secret_read", "step_artefacts"]
