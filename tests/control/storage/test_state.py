"""`RunState.fold`: the run's and each step's state from the events, as a pure left fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowforge.control.storage import Event, EventType, RunState, RunStatus, StepStatus

E = EventType
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def history(*items: tuple[EventType, dict[str, Any]]) -> list[Event]:
    return [
        Event("run", seq, kind, data, T0 + timedelta(seconds=seq))
        for seq, (kind, data) in enumerate(items, start=1)
    ]


def test_a_run_with_a_retry_an_approval_and_a_skip() -> None:
    events = history(
        (E.RUN_STARTED, {"steps": ["fetch", "gate", "post", "skipme"], "inputs": {"q": 1}}),
        (E.STEP_DISPATCHED, {"step": "fetch", "attempt": 1}),
        (
            E.STEP_RETRY_SCHEDULED,
            {
                "step": "fetch",
                "attempt": 1,
                "error": {"kind": "unavailable"},
                "retry_at": "2025-01-01T00:00:30+00:00",
            },
        ),
        (E.STEP_DISPATCHED, {"step": "fetch", "attempt": 2}),
        (E.STEP_SUCCEEDED, {"step": "fetch", "attempt": 2, "output": {"rows": 3}}),
        (E.APPROVAL_REQUESTED, {"step": "gate", "deadline": "2025-01-02T00:00:00+00:00"}),
    )
    state = RunState.fold(events)
    assert state.status is RunStatus.WAITING_APPROVAL
    assert state.inputs == {"q": 1} and state.started_at == T0 + timedelta(seconds=1)
    fetch = state.steps["fetch"]
    assert (fetch.status, fetch.attempt, fetch.output) == (StepStatus.SUCCEEDED, 2, {"rows": 3})
    assert fetch.first_dispatched_at == T0 + timedelta(seconds=2)
    assert fetch.dispatched_at == T0 + timedelta(seconds=4)
    assert fetch.duration_s == 3.0
    assert fetch.error is None and fetch.retry_at is None
    gate = state.steps["gate"]
    assert gate.status is StepStatus.WAITING_APPROVAL
    assert gate.approval_deadline == datetime(2025, 1, 2, tzinfo=UTC)
    assert state.steps["post"].status is StepStatus.PENDING

    more = history(
        *[(e.type, e.data) for e in events],
        (E.APPROVAL_GRANTED, {"step": "gate", "by": "ada", "comment": "ok"}),
        (E.STEP_SKIPPED, {"step": "skipme", "reason": "when was false"}),
        (E.STEP_DISPATCHED, {"step": "post", "attempt": 1}),
        (E.STEP_FAILED, {"step": "post", "attempt": 1, "error": {"kind": "invalid-input"}}),
        (E.RUN_FAILED, {"error": {"step": "post"}}),
        (E.RUN_SUCCEEDED, {}),  # after the end: the first ending stands
    )
    state = RunState.fold(more)
    assert state.status is RunStatus.FAILED
    assert state.error == {"step": "post"}
    assert state.finished_at == T0 + timedelta(seconds=11)
    assert state.steps["gate"].output == {"approved": True, "by": "ada", "comment": "ok"}
    assert state.steps["skipme"].status is StepStatus.SKIPPED
    assert state.steps["post"].error == {"kind": "invalid-input"}
    assert state.last_seq == 12


def test_retry_scheduled_step_keeps_the_retry_time() -> None:
    state = RunState.fold(
        history(
            (E.RUN_STARTED, {}),
            (E.STEP_DISPATCHED, {"step": "a"}),
            (E.STEP_RETRY_SCHEDULED, {"step": "a", "retry_at": "2025-01-01T00:01:00+00:00"}),
        )
    )
    a = state.step("a")
    assert (a.status, a.attempt) == (StepStatus.RETRY_SCHEDULED, 1)
    assert a.retry_at == datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    assert state.status is RunStatus.RUNNING


def test_rejection_fails_the_approval_step_and_cancel_ends_the_run() -> None:
    state = RunState.fold(
        history(
            (E.RUN_STARTED, {}),
            (E.APPROVAL_REQUESTED, {"step": "gate"}),
            (E.APPROVAL_REJECTED, {"step": "gate", "by": "bob", "comment": "not today"}),
            (E.RUN_CANCELLED, {"reason": "rejected"}),
        )
    )
    gate = state.step("gate")
    assert gate.status is StepStatus.FAILED
    assert gate.error == {
        "kind": "rejected",
        "message": "not today",
        "by": "bob",
        "comment": "not today",
    }
    assert state.status is RunStatus.CANCELLED and state.error == "rejected"
    assert not state.waiting_approval


def test_before_run_started_the_run_is_pending() -> None:
    assert RunState.fold([]).status is RunStatus.PENDING
    state = RunState.fold(history((E.STEP_DISPATCHED, {"step": "a"})))
    assert state.status is RunStatus.PENDING
    assert state.step("a").status is StepStatus.DISPATCHED


def test_fold_leaves_its_start_untouched() -> None:
    events = history((E.RUN_STARTED, {"steps": ["a"]}), (E.STEP_DISPATCHED, {"step": "a"}))
    start = RunState.fold(events[:1])
    snapshot = start.copy()
    later = RunState.fold(events[1:], start=start)
    assert start == snapshot
    assert later.step("a").status is StepStatus.DISPATCHED


_JSON = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from(["x", "é"]),
    st.lists(st.integers(0, 3), max_size=2),
)
_DATA = st.fixed_dictionaries(
    {"step": st.sampled_from(["a", "b", "c"])},
    optional={
        "attempt": st.integers(0, 5),
        "output": _JSON,
        "error": _JSON,
        "retry_at": st.sampled_from(["2025-01-01T00:00:05+00:00", "not a time"]),
        "deadline": st.just("2025-01-03T00:00:00+00:00"),
        "steps": st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4),
        "inputs": _JSON,
        "by": st.sampled_from(["ada", ""]),
    },
)
_EVENTS = st.lists(st.tuples(st.sampled_from(list(EventType)), _DATA), max_size=30).map(
    lambda items: history(*items)
)


@given(_EVENTS, st.data())
def test_folding_a_prefix_then_the_rest_equals_folding_all(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)))
    whole = RunState.fold(events)
    prefix = RunState.fold(events[:cut])
    assert RunState.fold(events[cut:], start=prefix) == whole
    incremental = RunState()
    for event in events:
        incremental.apply(event)
    assert incremental == whole


@given(_EVENTS)
def test_fold_invariants(events: list[Event]) -> None:
    state = RunState.fold(events)
    waiting = {s.id for s in state.steps.values() if s.status is StepStatus.WAITING_APPROVAL}
    assert state.waiting_approval == waiting
    if state.status is RunStatus.WAITING_APPROVAL:
        assert waiting
    if not any(e.type is E.RUN_STARTED for e in events):
        assert state.status in (
            RunStatus.PENDING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
        )
    assert state.last_seq == len(events)
