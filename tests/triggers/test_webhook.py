"""Webhook triggers over real HTTP: signed, unsigned, missing and wrong signatures, stale
and replayed timestamps, bad JSON, unknown paths, other methods, oversized bodies, refused
input; and a real run started by a POST."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from flowforge.control.secrets import SecretBox, SecretStore
from flowforge.control.storage import RunStatus, Storage
from flowforge.control.triggers import SIGNATURE_HEADER, TIMESTAMP_HEADER, TriggerManager, sign

from .conftest import OpenEngine, Packages, Recorder, engine_start_run, store_workflow

SECRET = "s3cret-hook-key"
SIGNED = {"type": "webhook", "path": "/hooks/orders", "secret": "hook_key"}
OPEN = {"type": "webhook", "path": "/hooks/open"}


@dataclass
class Hooks:
    manager: TriggerManager
    http: aiohttp.ClientSession
    recorder: Recorder

    def url(self, path: str) -> str:
        return f"http://{self.manager.webhook_address}{path}"

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(self.url(path), data=body, headers=headers or {}) as answer:
            return answer.status, await answer.json()


@pytest.fixture
async def hooks(storage: Storage, recorder: Recorder) -> AsyncIterator[Hooks]:
    secrets = SecretStore(storage.db, SecretBox(os.urandom(32)))
    await secrets.set("default", "hook_key", SECRET)
    await store_workflow(storage, "orders", [SIGNED])
    await store_workflow(storage, "open", [OPEN])
    manager = TriggerManager(
        storage,
        recorder,
        webhook_listen="127.0.0.1:0",
        secrets=secrets,
        refresh_every=None,
        webhook_max_body=64 * 1024,
    )
    async with manager, aiohttp.ClientSession() as http:
        yield Hooks(manager, http, recorder)


ORDER = json.dumps({"order": 7, "items": ["a", "b"]}).encode()


async def test_a_signed_post_starts_a_run_with_the_body_as_input(hooks: Hooks) -> None:
    status, answer = await hooks.post(
        "/hooks/orders", ORDER, {SIGNATURE_HEADER: sign(SECRET, ORDER)}
    )
    assert (status, answer) == (202, {"run_id": "run-1"})
    [call] = hooks.recorder.calls
    assert (call.project, call.workflow, call.input) == ("default", "orders", json.loads(ORDER))
    assert call.trigger == {"type": "webhook", "path": "/hooks/orders"}


async def test_an_unsigned_webhook_takes_any_json(hooks: Hooks) -> None:
    status, answer = await hooks.post("/hooks/open", b"[1, 2]")
    assert (status, answer) == (202, {"run_id": "run-1"})
    assert hooks.recorder.calls[0].input == [1, 2]


async def test_a_missing_signature_is_refused_with_the_reason(hooks: Hooks) -> None:
    status, answer = await hooks.post("/hooks/orders", ORDER)
    assert status == 401
    assert f"missing {SIGNATURE_HEADER} header" in answer["error"]
    assert "'hook_key'" in answer["error"]
    assert hooks.recorder.calls == []


async def test_a_wrong_signature_is_refused(hooks: Hooks) -> None:
    wrong = sign("another secret", ORDER)
    status, answer = await hooks.post("/hooks/orders", ORDER, {SIGNATURE_HEADER: wrong})
    assert status == 401
    assert "does not match" in answer["error"]
    # Signed over other bytes than those sent.
    other = sign(SECRET, ORDER + b" ")
    status, _ = await hooks.post("/hooks/orders", ORDER, {SIGNATURE_HEADER: other})
    assert status == 401
    status, answer = await hooks.post("/hooks/orders", ORDER, {SIGNATURE_HEADER: "md5=abc"})
    assert (status, answer["error"]) == (401, f"{SIGNATURE_HEADER} must read sha256=<hex>")
    assert hooks.recorder.calls == []


async def test_a_timestamped_delivery_is_accepted_once_and_not_when_stale(hooks: Hooks) -> None:
    now = str(int(time.time()))
    headers = {SIGNATURE_HEADER: sign(SECRET, ORDER, now), TIMESTAMP_HEADER: now}
    assert (await hooks.post("/hooks/orders", ORDER, headers))[0] == 202
    # The same signed request again: a replay.
    status, answer = await hooks.post("/hooks/orders", ORDER, headers)
    assert status == 409
    assert "accepted already" in answer["error"]
    # The timestamp is covered by the MAC: another one with the old signature fails.
    moved = {**headers, TIMESTAMP_HEADER: str(int(now) + 1)}
    assert (await hooks.post("/hooks/orders", ORDER, moved))[0] == 401
    # Six minutes old, correctly signed: too old.
    old = str(int(time.time()) - 360)
    stale = {SIGNATURE_HEADER: sign(SECRET, ORDER, old), TIMESTAMP_HEADER: old}
    status, answer = await hooks.post("/hooks/orders", ORDER, stale)
    assert status == 401
    assert "s old" in answer["error"] and "replay protection" in answer["error"]
    assert len(hooks.recorder.calls) == 1


async def test_a_body_that_is_not_json_is_a_bad_request(hooks: Hooks) -> None:
    body = b"order=7"
    status, answer = await hooks.post("/hooks/orders", body, {SIGNATURE_HEADER: sign(SECRET, body)})
    assert status == 400
    assert "not JSON" in answer["error"]
    assert hooks.recorder.calls == []


async def test_an_unknown_path_is_not_found(hooks: Hooks) -> None:
    status, answer = await hooks.post("/hooks/nothing", b"{}")
    assert (status, answer) == (404, {"error": "no webhook trigger at /hooks/nothing"})


async def test_only_post_is_taken(hooks: Hooks) -> None:
    async with hooks.http.get(hooks.url("/hooks/open")) as answer:
        assert answer.status == 405
        assert answer.headers["Allow"] == "POST"
        assert "takes POST" in (await answer.json())["error"]


async def test_a_body_past_the_cap_is_too_large(hooks: Hooks) -> None:
    big = json.dumps({"pad": "x" * (64 * 1024)}).encode()
    status, answer = await hooks.post("/hooks/open", big)
    assert status == 413
    assert "65536 bytes" in answer["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap still holds
        for _ in range(80):
            yield b" " * 1024

    async with hooks.http.post(hooks.url("/hooks/open"), data=chunks()) as streamed:
        assert streamed.status == 413
    assert hooks.recorder.calls == []


async def test_input_the_run_refuses_is_unprocessable(hooks: Hooks) -> None:
    hooks.recorder.refuse = "input: 'order' is a required property"
    status, answer = await hooks.post("/hooks/open", b"{}")
    assert status == 422
    assert answer["error"] == "the run was refused: input: 'order' is a required property"


async def test_a_secret_that_is_not_set_is_reported(storage: Storage, hooks: Hooks) -> None:
    missing = {"type": "webhook", "path": "/hooks/unset", "secret": "never_set"}
    await store_workflow(storage, "unset", [missing])
    await hooks.manager.refresh()
    status, answer = await hooks.post("/hooks/unset", b"{}", {SIGNATURE_HEADER: sign("x", b"{}")})
    assert status == 503
    assert "no secret 'never_set' in project 'default'" in answer["error"]


async def test_a_refresh_serves_new_paths_and_reports_a_path_taken_twice(
    storage: Storage, hooks: Hooks
) -> None:
    assert (await hooks.post("/hooks/late", b"{}"))[0] == 404
    await store_workflow(storage, "late", [{"type": "webhook", "path": "/hooks/late"}])
    await store_workflow(storage, "twin", [OPEN])
    await hooks.manager.refresh()
    assert (await hooks.post("/hooks/late", b"{}"))[0] == 202
    assert hooks.manager.problems == [
        "default/twin trigger 0 (webhook): webhook path /hooks/open is taken by "
        "default/open trigger 0 (webhook); give one of them another path"
    ]
    assert (await hooks.post("/hooks/open", b"{}"))[0] == 202
    assert [c.workflow for c in hooks.recorder.calls] == ["late", "open"]


ECHO = """
name: hook-echo
triggers:
  - type: webhook
    path: /hooks/echo
steps:
  only:
    uses: acme/echo@^1
    input: {got: "${{ inputs.order }}"}
"""


async def test_a_post_starts_a_real_run_that_succeeds(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    await engine.catalog.put(packages.workflow(ECHO))
    seen: list[dict[str, Any]] = []
    manager = TriggerManager(
        engine.storage,
        engine_start_run(engine, seen),
        webhook_listen="127.0.0.1:0",
        refresh_every=None,
    )
    async with manager, aiohttp.ClientSession() as http:
        url = f"http://{manager.webhook_address}/hooks/echo"
        async with http.post(url, json={"order": 99}) as answer:
            assert answer.status == 202
            run_id = (await answer.json())["run_id"]
        result = await asyncio.wait_for(engine.scheduler.wait(run_id), 30)
    assert result.state.status is RunStatus.SUCCEEDED, result.state.error
    assert result.state.outputs == {"only": {"got": 99}}
    assert seen == [{"type": "webhook", "path": "/hooks/echo"}]
    [audited] = await engine.storage.audit.list(action="run.start")
    assert (audited.actor, audited.target) == ("trigger:webhook(/hooks/echo)", f"run:{run_id}")
    assert audited.details["trigger"] == {"type": "webhook", "path": "/hooks/echo"}
