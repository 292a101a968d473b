"""Bus messages: every field survives encode -> decode, and bad bytes are refused with the
field that is wrong."""

from __future__ import annotations

import json

import pytest

from flowforge.runtime import (
    ConnectorFailed,
    Failure,
    Limits,
    LogLine,
    SandboxStopped,
    Stats,
    Success,
)
from flowforge.runtime.bus import (
    DeadLetter,
    MessageError,
    ResultMessage,
    RunEvent,
    TaskMessage,
    TaskOutcome,
    TaskRejected,
)
from flowforge.runtime.canonical import is_canonical_json

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def full_task() -> TaskMessage:
    return TaskMessage(
        run_id="run-1",
        step_id="fetch_users",
        attempt=2,
        pool="gpu",
        package_digest="ab" * 32,
        config='{"url":"https://example.test"}',
        input='{"ids":[1,2,3]}',
        network=("api.example.test", "*.example.org:443"),
        secrets="ffseal1.AAAA",
        limits=Limits(timeout_s=2.5, memory_bytes=1 << 24),
        deadline=1_800_000_000.25,
        traceparent=TRACE,
    )


def test_task_round_trip_keeps_every_field() -> None:
    task = full_task()
    data = task.encode()
    assert is_canonical_json(data)
    assert TaskMessage.decode(data) == task
    assert task.msg_id == "run-1/fetch_users/2"


def test_a_minimal_task_is_compact() -> None:
    task = TaskMessage("r", "s", 1, "default", "cd" * 32)
    doc = json.loads(task.encode())
    assert set(doc) == {"v", "run", "step", "attempt", "pool", "package", "config", "input"}
    assert TaskMessage.decode(task.encode()) == task


def test_only_limits_that_differ_from_the_defaults_travel() -> None:
    doc = full_task().to_json()
    assert doc["limits"] == {"timeout_s": 2.5, "memory_bytes": 1 << 24}


@pytest.mark.parametrize(
    "outcome",
    [
        Success('{"ok":true}', [LogLine("info", "hello", "host")], Stats(1.5, 100, 65536, 1)),
        ConnectorFailed(Failure("rate-limited", "slow down", 1500), [], Stats(wall_ms=2.0)),
        ConnectorFailed(Failure("invalid-input", "no name")),
        SandboxStopped("timeout", "the wall-clock limit of 1 s was reached"),
        TaskRejected("package-refused", "refused acme/x@1.0.0: untrusted key"),
    ],
)
def test_result_round_trip_keeps_the_outcome(outcome: TaskOutcome) -> None:
    result = ResultMessage("run-1", "step", 1, "host-1-abc", outcome, 10.0, 11.5, unsigned_dev=True)
    assert ResultMessage.decode(result.encode()) == result


def test_dead_letter_and_event_round_trip() -> None:
    letter = DeadLetter("gpu", "run-1/s/1", "delivered 3 times", 3, 12.5, full_task())
    assert DeadLetter.decode(letter.encode()) == letter
    assert (letter.run_id, letter.step_id) == ("run-1", "s")
    event = RunEvent("run-1", 7, "step-succeeded", {"step": "s", "output": {"a": [1]}}, 3.25)
    assert RunEvent.decode(event.encode()) == event


def test_another_version_is_refused_with_a_clear_error() -> None:
    doc = full_task().to_json()
    doc["v"] = 2
    with pytest.raises(MessageError, match="version 2; this FlowForge reads version 1"):
        TaskMessage.decode(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attempt": "2"}, "field 'attempt' must be int"),
        ({"attempt": True}, "field 'attempt' must be int"),
        ({"run": "a.b"}, "run id 'a.b' must be"),
        ({"pool": "a b"}, "pool 'a b' must be"),
        ({"limits": {"fuel": 0}}, "limit fuel must be positive"),
        ({"limits": {"cpu": 1}}, "unknown fields: cpu"),
        ({"network": ["ok", 3]}, "'network' must be a list of strings"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], message: str) -> None:
    doc = {**full_task().to_json(), **change}
    with pytest.raises(MessageError, match=message):
        TaskMessage.decode(json.dumps(doc).encode())


def test_missing_fields_and_garbage_are_refused() -> None:
    doc = full_task().to_json()
    del doc["package"]
    with pytest.raises(MessageError, match="has no 'package'"):
        TaskMessage.decode(json.dumps(doc).encode())
    with pytest.raises(MessageError, match="not JSON"):
        TaskMessage.decode(b"\xff")
    result = ResultMessage("r", "s", 1, "w", Success("{}")).to_json()
    result["outcome"] = {"status": "stopped", "reason": "bored", "message": ""}
    with pytest.raises(MessageError, match="unknown stop reason 'bored'"):
        ResultMessage.decode(json.dumps(result).encode())
