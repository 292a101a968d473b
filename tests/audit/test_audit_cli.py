"""`flowforge audit verify|export|list` as a user runs them, against a workspace database
edited behind the log's back with plain SQL; and the local commands that write to it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowforge.control.storage import Storage, database_url
from flowforge.control.storage.audit import GENESIS_HASH, entry_hash, local_actor
from flowforge.runtime.signing import public_key_line, raw_public_key
from tests.cli import run_cli


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FLOWFORGE_DATABASE", raising=False)
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    folder = tmp_path / "workspace"
    folder.mkdir()

    async def fill() -> None:
        async with await Storage.open(database_url(folder)) as storage:
            for i in range(1, 6):
                await storage.audit.append(f"local:u{i}", "run.start", f"run:r{i}", {"n": i})

    asyncio.run(fill())
    return folder


def _sql(workspace: Path, *statements: str) -> None:
    with sqlite3.connect(workspace / "flowforge.db") as conn:
        for statement in statements:
            conn.execute(statement)


def _verify(workspace: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = run_cli("audit", "verify", "--workspace", str(workspace), "--output", "json", *args)
    assert result.stdout, result.stderr
    return result.code, result.json


def test_an_intact_log_verifies(workspace: Path) -> None:
    result = run_cli("audit", "verify", "--workspace", str(workspace))
    assert result.code == 0, result.stderr
    assert "intact: 5 entries, last seq 5" in result.stdout
    code, report = _verify(workspace)
    assert code == 0
    assert report["intact"] is True and report["rows"] == 5 and report["problem"] is None


def test_verify_names_an_edited_row(workspace: Path) -> None:
    _sql(workspace, "UPDATE audit_log SET details = '{\"n\":99}' WHERE seq = 4")
    result = run_cli("audit", "verify", "--workspace", str(workspace))
    assert result.code == 1
    assert "TAMPERED at row 4 (edited): row 4 was edited" in result.stdout
    code, report = _verify(workspace)
    assert code == 1
    assert report["problem"] == {
        "seq": 4,
        "kind": "edited",
        "message": "row 4 was edited: its content does not match its hash "
        "(run.start by local:u4 on run:r4)",
    }


def test_verify_names_a_deleted_row(workspace: Path) -> None:
    _sql(workspace, "DELETE FROM audit_log WHERE seq = 2")
    result = run_cli("audit", "verify", "--workspace", str(workspace))
    assert result.code == 1
    assert "TAMPERED at row 2 (deleted): row 2 missing: row 3 follows row 1" in result.stdout


def test_verify_names_a_swapped_pair(workspace: Path) -> None:
    _sql(
        workspace,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -1",
    )
    code, report = _verify(workspace)
    assert code == 1
    problem = report["problem"]
    assert isinstance(problem, dict)
    assert (problem["seq"], problem["kind"]) == (2, "reordered")
    assert "rows 2 and 3 were swapped" in problem["message"]


def test_verify_against_an_anchor_finds_a_removed_tail(workspace: Path) -> None:
    out = workspace / "audit.jsonl"
    exported = run_cli("audit", "export", "--workspace", str(workspace), "--out", str(out))
    assert exported.code == 0, exported.stderr
    anchor = json.loads(out.read_text().splitlines()[-1])["hash"]
    assert anchor in exported.stderr
    _sql(
        workspace,
        "DELETE FROM audit_log WHERE seq = 5",
        "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4)",
    )
    assert _verify(workspace)[0] == 0  # the chain alone cannot tell
    code, report = _verify(workspace, "--anchor", anchor)
    assert code == 1
    assert isinstance(report["problem"], dict) and report["problem"]["kind"] == "anchor"
    bad = run_cli("audit", "verify", "--workspace", str(workspace), "--anchor", "nothex")
    assert bad.code == 2 and "64 hex digits" in bad.stderr


def test_export_writes_json_lines_that_chain(workspace: Path) -> None:
    result = run_cli("audit", "export", "--workspace", str(workspace))
    assert result.code == 0, result.stderr
    prev = GENESIS_HASH
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    for line in lines:
        entry = json.loads(line)
        assert entry["prev_hash"] == prev
        assert entry_hash(**{k: v for k, v in entry.items() if k != "hash"}) == entry["hash"]
        prev = entry["hash"]
    since = run_cli("audit", "export", "--workspace", str(workspace), "--since", "3")
    assert [json.loads(line)["seq"] for line in since.stdout.splitlines()] == [4, 5]


def test_list_shows_newest_first_and_filters(workspace: Path) -> None:
    result = run_cli(
        "audit", "list", "--workspace", str(workspace), "--limit", "2", "--output", "json"
    )
    assert result.code == 0, result.stderr
    assert [e["seq"] for e in result.json] == [5, 4]
    table = run_cli("audit", "list", "--workspace", str(workspace), "--action", "trust.add")
    assert table.code == 0 and "no audit entries" in table.stdout


def test_trust_and_secret_commands_are_audited_without_values(workspace: Path) -> None:
    ws = str(workspace)
    public = public_key_line(raw_public_key(Ed25519PrivateKey.generate()))
    added = run_cli("trust", "add", public, "--publisher", "acme", "--workspace", ws)
    assert added.code == 0, added.stderr
    fingerprint = public.split()[-1]
    revoked = run_cli("trust", "revoke", fingerprint, "--workspace", ws)
    assert revoked.code == 0, revoked.stderr
    stored = run_cli("secret", "set", "API_TOKEN", "--workspace", ws, stdin="hunter2-value\n")
    assert stored.code == 0, stored.stderr
    listed = run_cli("audit", "list", "--workspace", ws, "--limit", "3", "--output", "json")
    entries = [(e["action"], e["target"], e["actor"]) for e in reversed(listed.json)]
    assert entries == [
        ("trust.add", f"key:{fingerprint}", local_actor()),
        ("trust.revoke", f"key:{fingerprint}", local_actor()),
        ("secret.set", "secret:default/API_TOKEN", local_actor()),
    ]
    assert listed.json[0]["details"] == {"project": "default", "name": "API_TOKEN", "created": True}
    exported = run_cli("audit", "export", "--workspace", ws)
    assert "hunter2-value" not in exported.stdout
    assert _verify(workspace)[0] == 0
