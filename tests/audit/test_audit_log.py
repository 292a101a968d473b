"""The audit log's hash chain on SQLite and PostgreSQL: appends chain, verify names the
first edited, deleted, reordered or rewritten row, the head and an anchor catch a removed
tail, and concurrent appends never fork the chain."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from flowforge.control.storage import Storage
from flowforge.control.storage.audit import GENESIS_HASH, AuditError, entry_hash
from tests.pg import fresh_database


async def _fill(storage: Storage, count: int = 5) -> None:
    for i in range(1, count + 1):
        await storage.audit.append(
            f"token:t{i}(ci)", "run.start", f"run:r{i}", {"workflow": "demo", "n": i}
        )


async def _sql(storage: Storage, *statements: str) -> None:
    def run(conn: Connection) -> None:
        for statement in statements:
            conn.execute(text(statement))

    await storage.db.transaction(run)


async def test_appends_chain_from_the_genesis_hash(storage: Storage) -> None:
    first = await storage.audit.append("local:ada", "trust.add", "key:ed25519:ab", {"p": "acme"})
    second = await storage.audit.append("local:ada", "trust.revoke", "key:ed25519:ab")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    at = first.at.isoformat(timespec="microseconds")
    expected = entry_hash(
        1, at, "local:ada", "trust.add", "key:ed25519:ab", {"p": "acme"}, "0" * 64
    )
    assert first.hash == expected
    report = await storage.audit.verify()
    assert report.intact and report.rows == 2 and report.last_hash == second.hash
    assert await storage.audit.head() == (2, second.hash)


async def test_an_intact_chain_verifies_and_an_empty_one_too(storage: Storage) -> None:
    empty = await storage.audit.verify()
    assert empty.intact and empty.rows == 0 and empty.last_hash == GENESIS_HASH
    await _fill(storage)
    report = await storage.audit.verify()
    assert report.intact, report.problem
    assert report.rows == 5 and report.last_seq == 5


async def test_an_edited_row_is_named(storage: Storage) -> None:
    await _fill(storage)
    await _sql(storage, "UPDATE audit_log SET actor = 'local:mallory' WHERE seq = 3")
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, "edited")
    assert "row 3 was edited" in report.problem.message
    assert report.rows == 2


async def test_an_edited_row_with_its_hash_recomputed_is_found_by_the_next_link(
    storage: Storage,
) -> None:
    await _fill(storage)
    rows = [r async for r in storage.audit.export()]
    row = rows[2]
    forged = entry_hash(
        3, row.at.isoformat(timespec="microseconds"), row.actor, row.action, "run:other",
        row.details, row.prev_hash,
    )  # fmt: skip
    await _sql(
        storage, f"UPDATE audit_log SET target = 'run:other', hash = '{forged}' WHERE seq = 3"
    )
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, "relinked")
    assert "row 3 was rewritten" in report.problem.message


async def test_a_deleted_row_is_named(storage: Storage) -> None:
    await _fill(storage)
    await _sql(storage, "DELETE FROM audit_log WHERE seq = 2")
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (2, "deleted")
    assert "row 2 missing" in report.problem.message


async def test_a_deleted_row_with_the_rest_renumbered_is_named(storage: Storage) -> None:
    await _fill(storage)
    await _sql(
        storage,
        "DELETE FROM audit_log WHERE seq = 2",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq = 3",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq = 4",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq = 5",
    )
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (2, "deleted")


async def test_a_swapped_pair_is_named(storage: Storage) -> None:
    await _fill(storage)
    await _sql(
        storage,
        "UPDATE audit_log SET seq = -1 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = -1",
    )
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, "reordered")
    assert "rows 3 and 4 were swapped" in report.problem.message


async def test_swapped_contents_under_their_old_hashes_are_named(storage: Storage) -> None:
    await _fill(storage)
    columns = "at, actor, action, target, details"
    await _sql(
        storage,
        f"CREATE TABLE swap_tmp AS SELECT seq, {columns} FROM audit_log WHERE seq IN (2, 3)",
        "UPDATE audit_log SET (at, actor, action, target, details) = "
        "(SELECT at, actor, action, target, details FROM swap_tmp WHERE swap_tmp.seq = 5 - "
        "audit_log.seq) WHERE seq IN (2, 3)",
        "DROP TABLE swap_tmp",
    )
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (2, "reordered")
    assert "rows 2 and 3 were swapped" in report.problem.message


async def test_a_removed_tail_shows_against_the_head_and_against_an_anchor(
    storage: Storage,
) -> None:
    await _fill(storage)
    anchor = (await storage.audit.verify()).last_hash
    await _sql(storage, "DELETE FROM audit_log WHERE seq = 5")
    report = await storage.audit.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (5, "truncated")
    # Someone who also rewinds the head leaves a whole, shorter chain: only the anchor shows it.
    await _sql(
        storage, "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4)"
    )
    assert (await storage.audit.verify()).intact
    anchored = await storage.audit.verify(anchor=anchor)
    assert anchored.problem is not None
    assert anchored.problem.kind == "anchor"
    assert anchor in anchored.problem.message
    kept = (await storage.audit.verify()).last_hash
    assert (await storage.audit.verify(anchor=kept)).intact


async def test_export_lines_parse_and_chain(storage: Storage) -> None:
    await _fill(storage, 7)
    lines = [json.dumps(r.to_json()) for r in [r async for r in storage.audit.export()]]
    prev = GENESIS_HASH
    for number, line in enumerate(lines, start=1):
        entry: dict[str, Any] = json.loads(line)
        assert entry["seq"] == number and entry["prev_hash"] == prev
        fields = {k: v for k, v in entry.items() if k != "hash"}
        assert entry_hash(**fields) == entry["hash"]
        prev = entry["hash"]
    since = [r.seq async for r in storage.audit.export(since=5)]
    assert since == [6, 7]


async def test_list_filters_newest_first(storage: Storage) -> None:
    await _fill(storage, 3)
    await storage.audit.append("local:ada", "secret.set", "secret:default/api", {"name": "api"})
    newest = await storage.audit.list(limit=2)
    assert [r.seq for r in newest] == [4, 3]
    sets = await storage.audit.list(action="secret.set")
    assert [(r.actor, r.target) for r in sets] == [("local:ada", "secret:default/api")]


async def test_bad_entries_are_refused(storage: Storage) -> None:
    with pytest.raises(AuditError, match=r"noun\.verb"):
        await storage.audit.append("local:ada", "TrustAdd", "key:x")
    with pytest.raises(AuditError, match="not JSON"):
        await storage.audit.append("local:ada", "trust.add", "key:x", {"when": object()})
    assert (await storage.audit.verify()).rows == 0


async def test_concurrent_appends_on_postgresql_keep_one_chain() -> None:
    with fresh_database("ff_audit") as url:
        # Two control planes on one database, each appending from many tasks at once.
        first, second = await Storage.open(url), await Storage.open(url)
        try:

            async def burst(storage: Storage, name: str) -> None:
                for i in range(10):
                    await storage.audit.append(f"local:{name}", "run.start", f"run:{name}{i}")

            await asyncio.gather(
                *(burst(first, f"a{n}") for n in range(8)),
                *(burst(second, f"b{n}") for n in range(8)),
            )
            report = await first.audit.verify()
            assert report.intact, report.problem
            assert report.rows == 160 and report.last_seq == 160
            seqs = [r.seq async for r in second.audit.export()]
            assert seqs == list(range(1, 161))
        finally:
            await first.close()
            await second.close()
