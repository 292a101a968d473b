"""Step artefacts: content-addressed and deduplicated, a size limit, pruning by age, the
scheduler capturing each attempt's input and output with secret values masked, and
`flowforge run artefacts` listing, fetching and pruning them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from flowforge.control.secrets import SecretBox, SecretStore, load_master_key
from flowforge.control.storage import (
    ConcurrencyConflict,
    EventType,
    NewEvent,
    RunStatus,
    Storage,
)
from flowforge.control.storage.artefacts import (
    BLOBS,
    ArtefactError,
    ArtefactStore,
    NewArtefact,
    artefact_body,
)
from flowforge.control.storage.audit import SECRET_READ
from flowforge.control.storage.events import AppendRequest
from flowforge.runtime.canonical import canonical_json
from tests.cli import run_cli
from tests.control.scheduler.conftest import OpenEngine, Packages
from tests.observability.secret_grep import SecretGrep

SECRET = "s3cr3t-value-42"


async def _run(storage: Storage, version: str, run_id: str) -> None:
    await storage.events.create_run(run_id, workflow="demo", version=version, project="p", input={})


async def _finish(storage: Storage, run_id: str, days_ago: float) -> None:
    at = datetime.now(UTC) - timedelta(days=days_ago)

    def run(conn: Connection) -> None:
        conn.execute(
            text("UPDATE runs SET status = 'succeeded', finished_at = :at WHERE id = :id"),
            {"at": at, "id": run_id},
        )

    await storage.db.transaction(run)


async def _blob_count(storage: Storage) -> int:
    def count(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(BLOBS)).scalar_one())

    return await storage.db.transaction(count)


async def test_the_same_content_is_stored_once(storage: Storage, version: str) -> None:
    await _run(storage, version, "r1")
    await _run(storage, version, "r2")
    same = artefact_body({"b": 2, "a": [1, "x"]})
    assert same == b'{"a":[1,"x"],"b":2}'
    await storage.artefacts.capture("r1", [NewArtefact("s", 1, "output", same)])
    await storage.artefacts.capture(
        "r2",
        [
            NewArtefact("s", 1, "input", artefact_body({"other": True})),
            NewArtefact("s", 1, "output", artefact_body({"a": [1, "x"], "b": 2})),
        ],
    )
    assert await _blob_count(storage) == 2
    digest = hashlib.sha256(same).hexdigest()
    refs = await storage.artefacts.list("r2")
    assert [(r.step, r.attempt, r.kind, r.size, r.truncated) for r in refs] == [
        ("s", 1, "input", len(b'{"other":true}'), False),
        ("s", 1, "output", len(same), False),
    ]
    assert refs[1].digest == digest == (await storage.artefacts.list("r1"))[0].digest
    assert await storage.artefacts.get(digest) == same
    with pytest.raises(ArtefactError, match="no artefact"):
        await storage.artefacts.get("0" * 64)


async def test_a_body_over_the_limit_keeps_only_its_digest(storage: Storage, version: str) -> None:
    await _run(storage, version, "r1")
    small = ArtefactStore(storage.db, max_bytes=16)
    big = artefact_body({"text": "x" * 100})
    refs = await small.capture(
        "r1",
        [NewArtefact("s", 1, "input", artefact_body(1)), NewArtefact("s", 1, "output", big)],
    )
    assert [(r.kind, r.truncated) for r in refs] == [("input", False), ("output", True)]
    listed = await storage.artefacts.list("r1", step="s")
    assert listed[1].size == len(big) and listed[1].truncated
    assert listed[1].digest == hashlib.sha256(big).hexdigest()
    with pytest.raises(ArtefactError, match="over the size limit"):
        await storage.artefacts.get(listed[1].digest)
    assert await storage.artefacts.get(listed[0].digest) == b"1"


async def test_prune_removes_old_finished_runs_and_unused_bodies(
    storage: Storage, version: str
) -> None:
    shared, only_old, young = artefact_body("shared"), artefact_body("old"), artefact_body("new")
    for run_id in ("old", "running", "recent"):
        await _run(storage, version, run_id)
    await storage.artefacts.capture(
        "old", [NewArtefact("s", 1, "input", shared), NewArtefact("s", 1, "output", only_old)]
    )
    await storage.artefacts.capture("running", [NewArtefact("s", 1, "input", shared)])
    await storage.artefacts.capture("recent", [NewArtefact("s", 1, "output", young)])
    await _finish(storage, "old", days_ago=40)
    await _finish(storage, "recent", days_ago=2)
    report = await storage.artefacts.prune(datetime.now(UTC) - timedelta(days=30))
    assert (report.links, report.blobs) == (2, 1)
    assert await storage.artefacts.list("old") == []
    assert len(await storage.artefacts.list("running")) == 1  # unfinished: kept however old
    assert await storage.artefacts.get(hashlib.sha256(shared).hexdigest()) == shared
    with pytest.raises(ArtefactError):
        await storage.artefacts.get(hashlib.sha256(only_old).hexdigest())
    assert await _blob_count(storage) == 2


async def test_artefacts_are_stored_with_their_events_or_not_at_all(
    storage: Storage, version: str
) -> None:
    await _run(storage, version, "r1")
    output = NewArtefact("s", 1, "output", artefact_body({"v": 1}))
    done = NewEvent(EventType.STEP_SUCCEEDED, {"step": "s", "attempt": 1}, "result/s/1")
    stale = AppendRequest("r1", 5, [done], artefacts=[output])  # the run is at seq 0
    [conflict] = await storage.events.append_many([stale])
    assert isinstance(conflict, ConcurrencyConflict)
    assert await storage.artefacts.list("r1") == []
    assert await _blob_count(storage) == 0

    [appended] = await storage.events.append_many(
        [AppendRequest("r1", 0, [done], artefacts=[output])]
    )
    assert not isinstance(appended, Exception) and appended.last_seq == 1
    assert [(r.step, r.kind) for r in await storage.artefacts.list("r1")] == [("s", "output")]

    # The same result again (a redelivery): its events are already stored, so are these.
    again = NewArtefact("s", 1, "output", artefact_body({"v": "different"}))
    redelivered = AppendRequest("r1", 0, [done], artefacts=[again])
    [repeat] = await storage.events.append_many([redelivered])
    assert not isinstance(repeat, Exception) and repeat.duplicates == ("result/s/1",)
    assert await _blob_count(storage) == 1


def test_secret_values_are_masked_before_hashing() -> None:
    body = artefact_body({"note": f"token={SECRET}", SECRET: [SECRET]}, {"token": SECRET})
    assert SECRET not in body.decode()
    assert json.loads(body) == {"note": "token=***", "***": ["***"]}


CHAIN = """
name: chain
steps:
  a:
    uses: acme/echo@^1
    input: {n: "${{ inputs.n }}", who: a}
  b:
    uses: acme/echo@^1
    input: {prev: "${{ steps.a.output }}", who: b}
"""

SECRETS = """
name: secret
steps:
  read:
    uses: acme/guest@^1
    input: {action: secret, name: token, note: "${{ inputs.note }}"}
    secrets: {token: api-token}
"""


async def test_the_scheduler_captures_each_attempt_and_dedupes_across_runs(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    version = packages.workflow(CHAIN)
    first = await engine.run(version, {"n": 7})
    second = await engine.run(version, {"n": 7})
    assert first.state.status is second.state.status is RunStatus.SUCCEEDED
    refs = await engine.storage.artefacts.list(first.run_id)
    assert [(r.step, r.attempt, r.kind) for r in refs] == [
        ("a", 1, "input"),
        ("a", 1, "output"),
        ("b", 1, "input"),
        ("b", 1, "output"),
    ]
    output_b = await engine.storage.artefacts.get(refs[3].digest)
    assert output_b == canonical_json(first.state.steps["b"].output)
    again = await engine.storage.artefacts.list(second.run_id)
    assert [r.digest for r in again] == [r.digest for r in refs]
    # echo's output is its input: two runs, four distinct bodies.
    assert len({r.digest for r in refs}) == 2
    assert await _blob_count(engine.storage) == 2


PAUSED = """
name: paused
steps:
  prepare:
    uses: acme/echo@^1
    input: {amount: "${{ inputs.amount }}"}
  sign_off:
    type: approval
"""


async def test_an_unfinished_runs_artefacts_are_stored_as_its_steps_finish(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    run_id = await engine.start_run(packages.workflow(PAUSED), {"amount": 5})
    for _ in range(1000):  # until prepare's result is stored (sign_off waits meanwhile)
        if any(
            e.type is EventType.STEP_SUCCEEDED for e in await engine.storage.events.read(run_id)
        ):
            break
        await asyncio.sleep(0.01)
    assert (await engine.storage.events.run(run_id)).waiting_approval == ("sign_off",)
    refs = await engine.storage.artefacts.list(run_id)  # no flush, no stop: already stored
    assert [(r.step, r.kind) for r in refs] == [("prepare", "input"), ("prepare", "output")]
    await engine.close()
    async with await Storage.open(f"sqlite+aiosqlite:///{packages.root / 'flowforge.db'}") as s:
        refs = await s.artefacts.list(run_id)
    assert [(r.step, r.kind) for r in refs] == [("prepare", "input"), ("prepare", "output")]


async def test_no_secret_value_reaches_artefacts_or_the_audit_log(
    packages: Packages, open_engine: OpenEngine
) -> None:
    key = load_master_key()  # created first, so the engine has a secret store
    engine = await open_engine()
    store = SecretStore(engine.storage.db, SecretBox(key))
    await store.set("default", "api-token", SECRET)
    version = packages.workflow(SECRETS)
    plain = await engine.run(version, {"note": "nothing to hide"})
    assert plain.state.status is RunStatus.SUCCEEDED, plain.state.error
    # The step read its secret: the audit log names it, without the value.
    reads = await engine.storage.audit.list(action=SECRET_READ)
    assert [(r.actor, r.target) for r in reads] == [("scheduler", f"run:{plain.run_id}")]
    assert reads[0].details["secrets"] == ["api-token"]
    assert reads[0].details["step"] == "read" and reads[0].details["attempt"] == 1
    grep = SecretGrep(SECRET)
    await grep.database(engine.storage)  # every row of every table, artefacts and audit too
    grep.assert_absent()

    # A run whose input carries the value (a user's mistake): its artefacts still mask it.
    leaky = await engine.run(version, {"note": SECRET})
    refs = await engine.storage.artefacts.list(leaky.run_id)
    assert {r.kind for r in refs} == {"input", "output"}
    bodies = [(r, await engine.storage.artefacts.get(r.digest)) for r in refs]
    grep = SecretGrep(SECRET)
    grep.artefacts(bodies)
    grep.audit_records(await engine.storage.audit.list(limit=100))
    grep.assert_absent()
    stored_input: dict[str, Any] = json.loads(bodies[0][1])
    assert stored_input["note"] == "***"


async def test_run_artefacts_lists_fetches_and_prunes_from_the_command_line(
    packages: Packages, open_engine: OpenEngine, tmp_path: Path
) -> None:
    engine = await open_engine()
    result = await engine.run(packages.workflow(CHAIN), {"n": 3})
    await engine.close()
    ws = str(packages.root)

    listed = await asyncio.to_thread(
        run_cli, "run", "artefacts", result.run_id, "--step", "b", "--workspace", ws,
        "--output", "json",
    )  # fmt: skip
    assert listed.code == 0, listed.stderr
    found = listed.json["artefacts"]
    assert [(a["step"], a["kind"]) for a in found] == [("b", "input"), ("b", "output")]
    out = tmp_path / "b-output.json"
    fetched = await asyncio.to_thread(
        run_cli, "run", "artefacts", result.run_id, "--get", found[1]["digest"],
        "--out", str(out), "--workspace", ws,
    )  # fmt: skip
    assert fetched.code == 0, fetched.stderr
    assert json.loads(out.read_bytes()) == result.state.steps["b"].output
    missing = await asyncio.to_thread(
        run_cli, "run", "artefacts", result.run_id, "--get", "ab" * 32, "--workspace", ws
    )
    assert missing.code == 1 and f"run {result.run_id} has no artefact" in missing.stderr

    async with await Storage.open(f"sqlite+aiosqlite:///{packages.root / 'flowforge.db'}") as s:
        await _finish(s, result.run_id, days_ago=31)
    pruned = await asyncio.to_thread(
        run_cli, "run", "artefacts", "prune", "--older-than", "30d", "--workspace", ws,
        "--output", "json",
    )  # fmt: skip
    assert pruned.code == 0, pruned.stderr
    assert (pruned.json["links"], pruned.json["blobs"]) == (4, 2)
    table = await asyncio.to_thread(run_cli, "run", "artefacts", result.run_id, "--workspace", ws)
    assert table.code == 0 and f"no artefacts for run {result.run_id}" in table.stdout
    bad = await asyncio.to_thread(
        run_cli, "run", "artefacts", "prune", "--older-than", "soon", "--workspace", ws
    )
    assert bad.code == 2 and "not a duration" in bad.stderr
