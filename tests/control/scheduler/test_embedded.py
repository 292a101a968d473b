"""The scheduler end to end in one process: chains, fan-out and join, `when`, retries,
failures, dead letters, approvals, cancel, breakers, secrets, duplicates, restarts."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from flowforge.control.scheduler import BreakerSettings, BreakerState, SchedulerError
from flowforge.control.scheduler.embedded import read_breakers
from flowforge.control.scheduler.offline import record_approval
from flowforge.control.secrets import SecretBox, SecretStore, load_master_key
from flowforge.control.storage import EventType, RunStatus, StepStatus
from flowforge.runtime.bus import BusSettings, ResultMessage, TaskMessage

from .conftest import OpenEngine, Packages, spin_config, until

CHAIN = """
name: chain
steps:
  a:
    uses: acme/echo@^1
    input: {n: "${{ inputs.n }}", who: a}
  b:
    uses: acme/echo@^1
    input: {prev: "${{ steps.a.output }}", who: b}
  c:
    uses: acme/echo@^1
    input: {prev: "${{ steps.b.output.prev.n }}", who: c}
"""


async def test_a_chain_runs_in_order_and_passes_outputs(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    version = packages.workflow(CHAIN)
    result = await engine.run(version, {"n": 7})
    state = result.state
    assert state.status is RunStatus.SUCCEEDED, state.error
    assert state.steps["c"].output == {"prev": 7, "who": "c"}
    assert state.outputs == {"c": {"prev": 7, "who": "c"}}
    events = await engine.storage.events.read(result.run_id)
    kinds = [(e.type, e.data.get("step")) for e in events]
    assert kinds == [
        (EventType.RUN_STARTED, None),
        (EventType.STEP_DISPATCHED, "a"),
        (EventType.STEP_SUCCEEDED, "a"),
        (EventType.STEP_DISPATCHED, "b"),
        (EventType.STEP_SUCCEEDED, "b"),
        (EventType.STEP_DISPATCHED, "c"),
        (EventType.STEP_SUCCEEDED, "c"),
        (EventType.RUN_SUCCEEDED, None),
    ]
    assert all(s.status is StepStatus.SUCCEEDED for s in state.steps.values())


FAN = """
name: fan
steps:
  start:
    uses: acme/echo@^1
    input: {items: [1, 2, 3]}
%s
  join:
    uses: acme/echo@^1
    input:
      all: [%s]
"""


async def test_a_fan_out_runs_in_parallel_and_the_join_waits_for_all(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    branches = "\n".join(
        f"  b{i}:\n    uses: acme/echo@^1\n"
        f"    input: {{i: {i}, seen: '${{{{ steps.start.output.items }}}}'}}"
        for i in range(8)
    )
    refs = ", ".join(f"'${{{{ steps.b{i}.output.i }}}}'" for i in range(8))
    version = packages.workflow(FAN % (branches, refs))
    assert version.steps["join"].needs == tuple(sorted(f"b{i}" for i in range(8)))
    result = await engine.run(version, {})
    assert result.state.status is RunStatus.SUCCEEDED, result.state.error
    assert result.state.steps["join"].output == {"all": list(range(8))}
    events = await engine.storage.events.read(result.run_id)
    dispatched = [e.data["step"] for e in events if e.type is EventType.STEP_DISPATCHED]
    # Every branch is dispatched in the one decision after `start` succeeded.
    first_branch = dispatched.index("b0")
    assert set(dispatched[first_branch : first_branch + 8]) == {f"b{i}" for i in range(8)}


WHEN = """
name: when
steps:
  check:
    uses: acme/echo@^1
    input: {count: "${{ inputs.count }}"}
  write:
    uses: acme/echo@^1
    input: {wrote: "${{ steps.check.output.count }}"}
    when: ${{ steps.check.output.count > `0` }}
  after:
    uses: acme/echo@^1
    input: {wrote: "${{ steps.write.output.wrote }}"}
  always:
    uses: acme/echo@^1
    input: {ok: true}
    when: ${{ steps.check.output.count == `0` }}
"""


async def test_when_false_skips_the_step_and_the_steps_after_it_still_run(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    version = packages.workflow(WHEN)
    result = await engine.run(version, {"count": 0})
    steps = result.state.steps
    assert result.state.status is RunStatus.SUCCEEDED
    assert steps["write"].status is StepStatus.SKIPPED
    assert "is false" in steps["write"].error
    assert steps["after"].status is StepStatus.SUCCEEDED
    assert steps["after"].output == {"wrote": None}  # a skipped step's output is null
    assert steps["always"].status is StepStatus.SUCCEEDED

    result = await engine.run(version, {"count": 2})
    assert result.state.steps["write"].status is StepStatus.SUCCEEDED
    assert result.state.steps["after"].output == {"wrote": 2}
    assert result.state.steps["always"].status is StepStatus.SKIPPED


FAILING = """
name: failing
steps:
  call:
    uses: acme/guest@^1
    input: {action: fail, kind: "${{ inputs.kind }}", retry_after_ms: 300, message: try later}
    retry:
      max_attempts: 3
      initial_backoff_ms: 10
      max_backoff_ms: 20
      retry_on: [unavailable]
  next:
    uses: acme/echo@^1
    needs: [call]
    input: {never: true}
"""


async def test_retries_honour_retry_after_then_exhaustion_fails_the_run(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    result = await engine.run(packages.workflow(FAILING), {"kind": "unavailable"})
    state = result.state
    assert state.status is RunStatus.FAILED
    assert state.steps["call"].status is StepStatus.FAILED
    assert state.steps["call"].attempt == 3
    assert state.steps["next"].status is StepStatus.PENDING
    assert state.error == {"step": "call", "kind": "unavailable", "message": "try later"}
    events = await engine.storage.events.read(result.run_id)
    dispatches = [e.at for e in events if e.type is EventType.STEP_DISPATCHED]
    retries = [e for e in events if e.type is EventType.STEP_RETRY_SCHEDULED]
    assert len(dispatches) == 3 and len(retries) == 2
    # The backoff asks for 10-20 ms; the connector's retry-after (300 ms) wins.
    for earlier, later in itertools.pairwise(dispatches):
        assert (later - earlier).total_seconds() >= 0.3
    for retry in retries:
        assert retry.data["error"]["retry_after_ms"] == 300
    failed = next(e for e in events if e.type is EventType.RUN_FAILED)
    assert failed.data["reason"] == "step call failed after 3 attempts: unavailable: try later"


async def test_a_failure_kind_not_retried_fails_at_once(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    result = await engine.run(packages.workflow(FAILING), {"kind": "invalid-input"})
    assert result.state.status is RunStatus.FAILED
    assert result.state.steps["call"].attempt == 1
    assert result.state.error["kind"] == "invalid-input"


async def test_a_dead_lettered_task_fails_its_step_saying_why(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    version = packages.workflow(
        "name: dead\nsteps:\n  lost:\n    uses: acme/echo@^1\n    pool: void\n    input: {}\n"
    )
    # A consumer of the `void` pool that gives every task up (no worker runs there).
    subscription = await engine.bus.tasks("void")
    run_id = await engine.scheduler.start_run(version, {})
    delivery = await subscription.next(5)
    assert delivery is not None
    await delivery.term("the test refuses it")
    result = await engine.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.FAILED
    error = result.state.steps["lost"].error
    assert error["kind"] == "dead-letter"
    assert "terminated by its consumer: the test refuses it" in error["message"]


APPROVAL = """
name: approval
steps:
  prepare:
    uses: acme/echo@^1
    input: {amount: "${{ inputs.amount }}"}
  sign_off:
    type: approval
    message: "Pay ${{ steps.prepare.output.amount }}?"
    %s
  pay:
    uses: acme/echo@^1
    input:
      approved: "${{ steps.sign_off.output.approved }}"
      by: "${{ steps.sign_off.output.by }}"
      timed_out: "${{ steps.sign_off.output.timed_out }}"
"""


async def _waiting(engine: Any, run_id: str) -> None:
    run = engine.scheduler.active(run_id)
    await until(lambda: bool(run.state.waiting_approval), 10, "the approval request")


async def test_an_approval_pauses_the_run_until_approved(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    run_id = await engine.start_run(packages.workflow(APPROVAL % ""), {"amount": 12})
    await _waiting(engine, run_id)
    record = await engine.storage.events.run(run_id)
    assert record.status is RunStatus.WAITING_APPROVAL
    events = await engine.storage.events.read(run_id)
    assert events[-1].type is EventType.APPROVAL_REQUESTED
    assert events[-1].data["message"] == "Pay 12?"
    await engine.scheduler.approve(run_id, "sign_off", by="ada", comment="fine")
    result = await engine.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.SUCCEEDED
    assert result.state.steps["pay"].output == {"approved": True, "by": "ada", "timed_out": False}


async def test_a_rejection_fails_the_run_and_a_second_decision_is_refused(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    run_id = await engine.start_run(packages.workflow(APPROVAL % ""), {"amount": 12})
    await _waiting(engine, run_id)
    with pytest.raises(SchedulerError, match="no step 'nope'"):
        await engine.scheduler.approve(run_id, "nope")
    await engine.scheduler.reject(run_id, "sign_off", by="grace", comment="too much")
    result = await engine.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.FAILED
    assert result.state.steps["pay"].status is StepStatus.PENDING
    assert result.state.error["message"] == "step sign_off was rejected by grace: too much"
    with pytest.raises(SchedulerError, match="not active"):
        await engine.scheduler.approve(run_id, "sign_off")


@pytest.mark.parametrize("default", ["approve", "reject"])
async def test_an_approval_timeout_takes_its_default_action(
    packages: Packages, open_engine: OpenEngine, default: str
) -> None:
    engine = await open_engine()
    text = APPROVAL % f"timeout: 200ms\n    on_timeout: {default}"
    result = await engine.run(packages.workflow(text), {"amount": 1})
    if default == "approve":
        assert result.state.status is RunStatus.SUCCEEDED
        assert result.state.steps["pay"].output["timed_out"] is True
    else:
        assert result.state.status is RunStatus.FAILED
        assert "rejected by its timeout" in result.state.error["message"]


async def test_cancel_ends_a_run(packages: Packages, open_engine: OpenEngine) -> None:
    engine = await open_engine()
    run_id = await engine.start_run(packages.workflow(APPROVAL % ""), {"amount": 3})
    await _waiting(engine, run_id)
    await engine.scheduler.cancel(run_id, "changed my mind")
    result = await engine.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.CANCELLED
    assert result.state.error == "changed my mind"
    assert await engine.storage.events.timers(run_id) == []


async def test_a_run_deadline_fails_the_run(packages: Packages, open_engine: OpenEngine) -> None:
    engine = await open_engine()
    text = (APPROVAL % "").replace("name: approval", "name: approval\ntimeout: 300ms")
    result = await engine.run(packages.workflow(text), {"amount": 3})
    assert result.state.status is RunStatus.FAILED
    assert result.state.error == {"kind": "timeout", "message": "the run's deadline (0.3 s) passed"}


BREAKER = """
name: breaker
steps:
  call:
    uses: acme/guest@^1
    input: {action: fail, kind: unavailable, url: "https://svc.test/api"}
    retry: {max_attempts: 6, initial_backoff_ms: 1, max_backoff_ms: 1, jitter: 0}
"""


async def test_the_circuit_breaker_opens_then_half_opens_to_probe(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine(breaker_settings=BreakerSettings(threshold=2, cooldown_s=0.4))
    result = await engine.run(packages.workflow(BREAKER), {})
    assert result.state.status is RunStatus.FAILED
    events = await engine.storage.events.read(result.run_id)
    waits = [
        e for e in events
        if e.type is EventType.STEP_RETRY_SCHEDULED and e.data["error"]["kind"] == "circuit-open"
    ]  # fmt: skip
    assert waits, "the open breaker held the step back"
    assert "acme/guest at svc.test is open" in waits[0].data["error"]["message"]
    dispatched = [e for e in events if e.type is EventType.STEP_DISPATCHED]
    # After the breaker opened, each cooldown let exactly one probe through.
    first_wait = events.index(waits[0])
    after = [e for e in dispatched if events.index(e) > first_wait]
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(after)]
    assert all(gap >= 0.35 for gap in gaps)
    views = engine.breaker_views()
    assert [(v.connector, v.host, v.state) for v in views] == [
        ("acme/guest", "svc.test", BreakerState.OPEN)
    ]
    saved = read_breakers(packages.root)
    assert saved[0]["state"] == "open" and saved[0]["host"] == "svc.test"


SECRET = """
name: secret
steps:
  read:
    uses: acme/guest@^1
    input: {action: secret, name: token}
    secrets: {token: api-token}
"""


async def test_secrets_are_sealed_on_the_bus(packages: Packages, open_engine: OpenEngine) -> None:
    key = load_master_key()  # creates the master key, so the engine has a secret store
    engine = await open_engine()
    store = SecretStore(engine.storage.db, SecretBox(key))
    await store.set("default", "api-token", "s3cr3t-value-42")
    sent: list[TaskMessage] = []
    publish = engine.bus.publish_task

    async def record(task: TaskMessage) -> bool:
        sent.append(task)
        return await publish(task)

    engine.bus.publish_task = record  # type: ignore[method-assign]
    result = await engine.run(packages.workflow(SECRET), {})
    assert result.state.status is RunStatus.SUCCEEDED, result.state.error
    assert len(sent) == 1
    assert b"s3cr3t-value-42" not in sent[0].encode()
    assert sent[0].secrets is not None and sent[0].secrets.startswith("ffseal1.")
    # The connector did read it (and the sandbox scrubbed it from the output).
    assert "s3cr3t-value-42" not in str(result.state.steps["read"].output)
    assert result.state.steps["read"].output["value"]


async def test_a_result_delivered_twice_is_applied_once(
    packages: Packages, open_engine: OpenEngine
) -> None:
    # A duplicate window too short to drop the repeat: the scheduler must.
    settings = BusSettings(ack_wait=2.0, max_deliver=3, duplicate_window=0.000001)
    engine = await open_engine(bus_settings=settings)
    publish = engine.bus.publish_result

    async def twice(result: ResultMessage) -> bool:
        first = await publish(result)
        await asyncio.sleep(0.001)
        await publish(result)
        return first

    engine.bus.publish_result = twice  # type: ignore[method-assign]
    result = await engine.run(packages.workflow(CHAIN), {"n": 1})
    assert result.state.status is RunStatus.SUCCEEDED
    events = await engine.storage.events.read(result.run_id)
    succeeded = [e.data["step"] for e in events if e.type is EventType.STEP_SUCCEEDED]
    assert succeeded == ["a", "b", "c"]


SLOW = """
name: slow
steps:
  slow:
    uses: acme/spin@^1
    with: {pad: "%s"}
    input: {n: "${{ inputs.n }}"}
  after:
    uses: acme/echo@^1
    input: {got: "${{ steps.slow.output.n }}"}
"""


async def test_a_restarted_scheduler_resumes_a_run_mid_step(
    packages: Packages, open_engine: OpenEngine
) -> None:
    version = packages.workflow(SLOW % spin_config(1.0)["pad"])
    first = await open_engine()
    run_id = await first.start_run(version, {"n": 5})
    run = first.scheduler.active(run_id)
    assert run is not None
    await until(lambda: run.state.steps["slow"].status is StepStatus.DISPATCHED, 5, "dispatch")
    await first.close()  # the process "dies" mid-step: its in-process queue is gone

    second = await open_engine()
    result = await second.scheduler.wait(run_id, timeout=20)
    assert result.state.status is RunStatus.SUCCEEDED, result.state.error
    assert result.state.steps["after"].output == {"got": 5}
    events = await second.storage.events.read(run_id)
    assert [e.data["step"] for e in events if e.type is EventType.STEP_DISPATCHED] == [
        "slow",
        "after",
    ]


async def test_an_approval_survives_a_restart(packages: Packages, open_engine: OpenEngine) -> None:
    version = packages.workflow(APPROVAL % "")
    first = await open_engine()
    run_id = await first.start_run(version, {"amount": 9})
    await _waiting(first, run_id)
    await first.close()
    second = await open_engine()
    assert second.scheduler.active(run_id) is not None
    await second.scheduler.approve(run_id, "sign_off", by="ops")
    result = await second.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.SUCCEEDED


async def test_an_approval_recorded_by_another_process_is_picked_up(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    run_id = await engine.start_run(packages.workflow(APPROVAL % ""), {"amount": 9})
    await _waiting(engine, run_id)
    # What `flowforge run approve` does from another process: append to the log.
    await record_approval(engine.storage, run_id, "sign_off", True, by="cli", comment=None)
    result = await engine.scheduler.wait(run_id, timeout=10)
    assert result.state.status is RunStatus.SUCCEEDED
    assert result.state.steps["pay"].output["by"] == "cli"


async def test_two_hundred_concurrent_runs_none_lost_stuck_or_doubled(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    version = packages.workflow(CHAIN)
    run_ids = await asyncio.gather(*(engine.start_run(version, {"n": i}) for i in range(200)))
    results = await asyncio.wait_for(
        asyncio.gather(*(engine.scheduler.wait(r) for r in run_ids)), 60
    )
    assert len(set(run_ids)) == 200
    for i, result in enumerate(results):
        assert result.state.status is RunStatus.SUCCEEDED
        assert result.state.steps["c"].output == {"prev": i, "who": "c"}
    assert await engine.storage.events.unfinished_runs() == []
    for run_id in run_ids:
        events = await engine.storage.events.read(run_id)
        assert [e.type for e in events].count(EventType.STEP_SUCCEEDED) == 3
