"""What the scheduler records for operators and auditors besides the run's events: each
step attempt's input and output as artefacts, and every secret read a step is given.

Both run after the decision's events are stored (`Scheduler._settle`, `_publish_task`);
artefacts go through the store's write-behind queue (see control/storage/artefacts.py).
Artefacts are captured with the step's granted secret values masked, so no value reaches
the artefact tables; the audit entry of a read names the secrets, never their values.
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


async def capture_artefacts(
    storage: Storage, secrets: SecretStore | None, run: ActiveRun, batch: Batch
) -> None:
    """Queue the inputs of the batch's dispatches and the outputs of its successes for the
    artefact writer; when the run has finished, wait until all of them are stored.

    A failure is logged, not raised: the run's events are already stored, and the run must
    go on whether or not its artefacts could be kept."""
    wanted: list[tuple[str, int, Kind, object]] = [
        (d.step, d.attempt, "input", d.input) for d in batch.dispatches
    ]
    for event in batch.events:
        if event.type is EventType.STEP_SUCCEEDED:
            data = event.data
            wanted.append((str(data["step"]), int(data["attempt"]), "output", data.get("output")))
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
        storage.artefacts.submit(run.id, items)
        if run.state.status.finished:
            await storage.artefacts.flush()
    except (StorageError, ValueError) as exc:
        log.warning("run %s: could not capture step artefacts: %s", run.id, exc)


async def _secret_values(
    secrets: SecretStore | None, run: ActiveRun, step_id: str
) -> dict[str, str] | None:
    """The values to mask in the step's artefacts ({} when it has no secrets); None when
    it has secrets whose values cannot be read. Those sealed for the step's task are used
    as they are; they are read again only for a run resumed since."""
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
        return await secrets.resolve(run.project, grants)
    except SecretError as exc:
        log.warning("run %s: step %s artefacts not kept: %s", run.id, step_id, exc)
        return None


__all__ = ["SCHEDULER_ACTOR", "capture_artefacts", "record_secret_read"]
