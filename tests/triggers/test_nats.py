"""NATS triggers against the real NATS at 127.0.0.1:4222, a subject of each test's own:
a JSON message starts a run (and a request is answered with its id), anything else is
dropped with a reason, wildcards match, two managers in the queue group start one run per
message; and a real run started by a message."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from flowforge.control.storage import RunStatus, Storage
from flowforge.control.triggers import TriggerManager

from .conftest import (
    NATS_URL,
    OpenEngine,
    Packages,
    Recorder,
    engine_start_run,
    store_workflow,
    until,
)


@pytest.fixture
def subject() -> str:
    return f"fftest.{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except (OSError, nats.errors.Error) as exc:
        pytest.skip(f"no NATS at {NATS_URL}: {exc}")
    try:
        yield nc
    finally:
        await nc.close()


def manager(storage: Storage, start_run: Any) -> TriggerManager:
    return TriggerManager(storage, start_run, nats_url=NATS_URL, refresh_every=None)


async def listening(client: Client, subject: str) -> None:
    """Wait until `client` sees the manager's subscription to `subject`: a new interest
    reaches a connection that was open before it a moment after the subscriber's flush
    (nats-server 2.9 answers "no responders" in that gap). The probe is not JSON, so it
    starts nothing (the listener counts it as dropped)."""
    for _ in range(100):
        try:
            await client.request(subject, b"probe", timeout=10)
            return
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.05)
    pytest.fail(f"nothing listens on {subject}")


async def test_a_message_starts_a_run_and_a_request_gets_its_id(
    storage: Storage, recorder: Recorder, client: Client, subject: str
) -> None:
    orders = f"{subject}.orders"
    version = await store_workflow(storage, "orders", [{"type": "nats", "subject": orders}])
    async with manager(storage, recorder):
        await listening(client, orders)
        await client.publish(orders, json.dumps({"order": 1}).encode())
        reply = await client.request(orders, json.dumps({"order": 2}).encode(), timeout=10)
        assert json.loads(reply.data) == {"run_ids": ["run-2"]}
    assert [c.input for c in recorder.calls] == [{"order": 1}, {"order": 2}]
    call = recorder.calls[0]
    assert (call.project, call.workflow, call.version) == ("default", "orders", version.version)
    assert call.trigger == {"type": "nats", "subject": orders, "message_subject": orders}


async def test_a_message_that_is_not_json_is_dropped_with_a_reason(
    storage: Storage,
    recorder: Recorder,
    client: Client,
    subject: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await store_workflow(storage, "orders", [{"type": "nats", "subject": subject}])
    with caplog.at_level(logging.WARNING, logger="flowforge.triggers"):
        async with manager(storage, recorder) as triggers:
            await listening(client, subject)
            reply = await client.request(subject, b"order=1", timeout=10)
            await client.publish(subject, b"\xff\xfe")
            assert triggers.nats is not None
            nats_listener = triggers.nats
            await until(lambda: nats_listener.dropped == 3, 10, "the messages to be dropped")
    assert "not JSON" in json.loads(reply.data)["error"]
    assert f"dropped a message on {subject}: the message is not JSON" in caplog.text
    assert recorder.calls == []


async def test_wildcards_match_and_refused_runs_are_reported_to_the_requester(
    storage: Storage, recorder: Recorder, client: Client, subject: str
) -> None:
    await store_workflow(storage, "any", [{"type": "nats", "subject": f"{subject}.*"}])
    async with manager(storage, recorder):
        await listening(client, f"{subject}.probe")
        reply = await client.request(f"{subject}.created", b"{}", timeout=10)
        assert json.loads(reply.data) == {"run_ids": ["run-1"]}
        recorder.refuse = "input: 'order' is a required property"
        reply = await client.request(f"{subject}.deleted", b"{}", timeout=10)
        assert json.loads(reply.data) == {
            "run_ids": [],
            "errors": ["default/any: input: 'order' is a required property"],
        }
    assert recorder.calls[0].trigger["message_subject"] == f"{subject}.created"


async def test_two_managers_share_the_queue_group_so_a_message_starts_one_run(
    storage: Storage, recorder: Recorder, client: Client, subject: str
) -> None:
    await store_workflow(storage, "orders", [{"type": "nats", "subject": subject}])
    async with manager(storage, recorder), manager(storage, recorder):
        await listening(client, subject)
        for n in range(20):
            await client.publish(subject, json.dumps({"n": n}).encode())
        await until(lambda: len(recorder.calls) >= 20, 10, "20 runs")
        # One more, answered: a duplicate delivery would show as an extra run.
        await client.request(subject, b"{}", timeout=10)
    assert sorted(c.input.get("n", -1) for c in recorder.calls) == [-1, *range(20)]


async def test_a_refresh_follows_the_subjects(
    storage: Storage, recorder: Recorder, client: Client, subject: str
) -> None:
    await store_workflow(storage, "orders", [{"type": "nats", "subject": f"{subject}.a"}])
    async with manager(storage, recorder) as triggers:
        await store_workflow(storage, "orders", [{"type": "nats", "subject": f"{subject}.b"}])
        await triggers.refresh()
        await listening(client, f"{subject}.b")
        reply = await client.request(f"{subject}.b", b"{}", timeout=10)
        assert json.loads(reply.data) == {"run_ids": ["run-1"]}
        with pytest.raises(nats.errors.NoRespondersError):
            await client.request(f"{subject}.a", b"{}", timeout=10)


ECHO = """
name: nats-echo
triggers:
  - type: nats
    subject: SUBJECT
steps:
  only:
    uses: acme/echo@^1
    input: {got: "${{ inputs.order }}"}
"""


async def test_a_message_starts_a_real_run_that_succeeds(
    packages: Packages, open_engine: OpenEngine, client: Client, subject: str
) -> None:
    engine = await open_engine()
    await engine.catalog.put(packages.workflow(ECHO.replace("SUBJECT", subject)))
    seen: list[dict[str, Any]] = []
    async with manager(engine.storage, engine_start_run(engine, seen)):
        await listening(client, subject)
        reply = await client.request(subject, json.dumps({"order": 5}).encode(), timeout=10)
        [run_id] = json.loads(reply.data)["run_ids"]
        result = await asyncio.wait_for(engine.scheduler.wait(run_id), 30)
    assert result.state.status is RunStatus.SUCCEEDED, result.state.error
    assert result.state.outputs == {"only": {"got": 5}}
    assert seen[0]["type"] == "nats"
