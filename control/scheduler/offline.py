"""Decisions recorded straight into a run's log, from a process that does not run it
(`flowforge run approve/reject/cancel` in embedded mode). The process running the run
notices the new events (it watches runs paused at an approval) and carries on; a run no
process holds carries on when a scheduler next resumes it."""

from __future__ import annotations

from flowforge.control.storage import EventType, NewEvent, RunState, StepStatus, Storage

from .scheduler import RUN_END_KEY, SchedulerError, approval_events


async def _state(storage: Storage, run_id: str) -> RunState:
    state = RunState.fold(await storage.events.read(run_id))
    if state.run_id is None:
        raise SchedulerError(f"no run {run_id!r}")
    if state.status.finished:
        raise SchedulerError(f"run {run_id} has already finished ({state.status})")
    return state


async def record_approval(
    storage: Storage,
    run_id: str,
    step: str,
    approved: bool,
    *,
    by: str | None,
    comment: str | None,
) -> RunState:
    """Approve or reject `step` of `run_id`; the run's state after the decision."""
    state = await _state(storage, run_id)
    current = state.steps.get(step)
    if current is None:
        raise SchedulerError(f"run {run_id} has no step {step!r}")
    if current.status is not StepStatus.WAITING_APPROVAL:
        raise SchedulerError(
            f"step {step} of run {run_id} is not waiting for approval (it is {current.status})"
        )
    events = [
        NewEvent(kind, data, RUN_END_KEY if kind is EventType.RUN_FAILED else f"approval/{step}")
        for kind, data in approval_events(step, approved, by, comment)
    ]
    appended = await storage.events.append(run_id, state.last_seq, events)
    return RunState.fold(appended.events, state)


async def record_cancel(storage: Storage, run_id: str, reason: str) -> RunState:
    state = await _state(storage, run_id)
    event = NewEvent(EventType.RUN_CANCELLED, {"reason": reason}, RUN_END_KEY)
    appended = await storage.events.append(run_id, state.last_seq, [event])
    return RunState.fold(appended.events, state)


__all__ = ["record_approval", "record_cancel"]
