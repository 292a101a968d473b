"""The live view of one run, the same for `flowforge run FILE` (in-process) and
`flowforge run watch RUN` (events streamed from the API): a table of the steps redrawn in
place on a terminal, one line per event anywhere else, then a summary."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Final

import click

from flowforge.control.scheduler import ActiveRun
from flowforge.control.storage import Event, EventType, RunState

_SYMBOL: Final = {
    "pending": ".",
    "dispatched": ">",
    "succeeded": "ok",
    "failed": "FAIL",
    "retry-scheduled": "retry",
    "skipped": "skip",
    "waiting-approval": "wait",
}


def describe(event: Event) -> str:
    """One event as one line of text."""
    data = event.data
    step = data.get("step")
    kind = event.type
    if kind is EventType.RUN_STARTED:
        dev = " (unsigned development connectors)" if data.get("unsigned_dev") else ""
        return f"run started{dev}"
    if kind is EventType.STEP_DISPATCHED:
        return f"{step}: dispatched (attempt {data.get('attempt')})"
    if kind is EventType.STEP_SUCCEEDED:
        return f"{step}: succeeded in {data.get('wall_ms', 0):.2f} ms"
    if kind in (EventType.STEP_FAILED, EventType.STEP_RETRY_SCHEDULED):
        error = data.get("error") or {}
        what = "failed" if kind is EventType.STEP_FAILED else f"retry at {data.get('retry_at')}"
        return f"{step}: {what}: {error.get('kind')}: {error.get('message')}"
    if kind is EventType.STEP_SKIPPED:
        return f"{step}: skipped ({data.get('reason')})"
    if kind is EventType.APPROVAL_REQUESTED:
        message = f": {data['message']}" if data.get("message") else ""
        return f"{step}: waiting for approval{message}"
    if kind in (EventType.APPROVAL_GRANTED, EventType.APPROVAL_REJECTED):
        verb = "approved" if kind is EventType.APPROVAL_GRANTED else "rejected"
        return f"{step}: {verb} by {data.get('by') or 'timeout'}"
    if kind is EventType.RUN_SUCCEEDED:
        return "run succeeded"
    return f"run {kind.value.removeprefix('run-')}: {data.get('reason', '')}"


def stamp(event: Event) -> str:
    return event.at.astimezone().strftime("%H:%M:%S.%f")[:-3]


class LiveTable:
    """The steps of one run: redrawn in place on a terminal, one line per event elsewhere.

    `show` takes the run's state after `events`; called as a scheduler listener it follows
    the first run it sees."""

    def __init__(self, steps: Sequence[str], tty: bool) -> None:
        self.steps = list(steps)
        self.tty = tty
        self.drawn = 0
        self.run_id: str | None = None

    def __call__(self, run: ActiveRun, events: Sequence[Event]) -> None:
        if self.run_id is None:
            self.run_id = run.id
        if run.id == self.run_id:
            self.show(run.state, events)

    def show(self, state: RunState, events: Sequence[Event]) -> None:
        if self.run_id is None:
            self.run_id = state.run_id
        if not self.tty:
            for event in events:
                click.echo(f"{stamp(event)} {describe(event)}")
            return
        self.draw(state)

    def draw(self, state: RunState) -> None:
        lines = [f"run {self.run_id}  {state.status}"]
        for step_id in self.steps or list(state.steps):
            step = state.step(step_id)
            detail = ""
            if step.status == "failed" or step.status == "retry-scheduled":
                error = step.error if isinstance(step.error, dict) else {}
                detail = f"{error.get('kind', '')}: {error.get('message', '')}"[:60]
            elif step.duration_s is not None:
                detail = f"{step.duration_s * 1000:.1f} ms"
            attempt = f"#{step.attempt}" if step.attempt > 1 else ""
            lines.append(
                f"  {step_id:<20} {_SYMBOL.get(step.status, step.status):<6} {attempt:<4} {detail}"
            )
        if self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F")
        sys.stdout.write("".join(f"{line}\x1b[K\n" for line in lines))
        sys.stdout.flush()
        self.drawn = len(lines)


def summary(run_id: str, state: RunState, dev: bool) -> None:
    """The last lines: the outcome and time, then the outputs or the error."""
    took = ""
    if state.started_at is not None and state.finished_at is not None:
        took = f" in {(state.finished_at - state.started_at).total_seconds() * 1000:.1f} ms"
    click.echo(f"run {run_id} {state.status}{took}")
    if dev:
        click.echo("(ran unsigned development connectors)")
    if state.status == "succeeded":
        click.echo(json.dumps(state.outputs, indent=2, ensure_ascii=False))
    elif state.error is not None:
        error = state.error
        click.echo(f"error: {error.get('message') if isinstance(error, dict) else error}")


__all__ = ["LiveTable", "describe", "stamp", "summary"]
