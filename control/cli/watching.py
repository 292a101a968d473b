"""Following a run through `RunService.Watch`, across dropped streams.

The run's state is folded here from the streamed events, exactly as the server folds it.
A stream that breaks (the server restarts, a proxy resets it) is opened again after the
last `seq` seen, so no event is shown twice or lost; only when the server stays away for
`RECONNECTS` attempts in a row does the watch give up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import grpc

from flowforge.control.api.client import Api
from flowforge.control.storage import Event, RunState, RunStatus
from flowforge.proto.v1 import run_pb2

from .run_view import event_of

RECONNECTS: Final = 20
_BACKOFF_S: Final = (0.1, 0.2, 0.5, 1.0, 2.0)
# What a dropped connection looks like; anything else (NOT_FOUND, PERMISSION_DENIED ...)
# is an answer, not a drop.
# (CANCELLED here is the server's doing: this client cancels only by ending.)
_DROPPED: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)

OnEvent = Callable[[RunState, Event | None, run_pb2.RunEvent], None]


class WatchLost(Exception):
    """The stream broke and could not be opened again."""


def paused(state: RunState) -> bool:
    return state.status is RunStatus.WAITING_APPROVAL or (
        bool(state.waiting_approval) and not state.status.finished
    )


async def follow(
    api: Api,
    project: str,
    run_id: str,
    on_event: OnEvent,
    *,
    until_paused: bool = False,
    state: RunState | None = None,
) -> RunState:
    """Stream the run's events (after `state.last_seq`) into `on_event` until the run
    finishes (or, with `until_paused`, waits for an approval); the state at that point."""
    state = state or RunState()
    failures = 0
    while True:
        call = api.runs.Watch(
            run_pb2.WatchRunRequest(project=project, run_id=run_id, after_seq=state.last_seq)
        )
        try:
            async for message in call:
                failures = 0
                if message.seq <= state.last_seq:
                    continue  # the server resent what this client already holds
                event = event_of(message)
                if event is not None:
                    state.apply(event)
                state.last_seq = max(state.last_seq, message.seq)
                on_event(state, event, message)
                if state.status.finished or (until_paused and paused(state)):
                    return state
            if state.status.finished:
                return state
            reason = "the server ended the stream before the run finished"
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _DROPPED:
                raise
            reason = f"{exc.code().name}: {exc.details()}"
        finally:
            call.cancel()
        failures += 1
        if failures > RECONNECTS:
            raise WatchLost(
                f"lost the event stream of run {run_id} ({reason}) and could not reopen it "
                f"in {RECONNECTS} attempts; `flowforge run watch {run_id}` carries on later"
            )
        await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1])


__all__ = ["RECONNECTS", "WatchLost", "follow", "paused"]
