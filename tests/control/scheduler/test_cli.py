"""`flowforge run FILE`, `flowforge workflow submit/list/show/diff` and `flowforge status`,
as a user runs them (separate processes). `run approve/reject/cancel` and the other API
client commands are tested in tests/control/cli_api/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli import run_cli

ROOT = Path(__file__).parents[3]
EXAMPLE = ROOT / "examples" / "workflows" / "paid-orders-export.yaml"
CSV = "id,customer,status\n1,Ada,paid\n2,Grace,open\n"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("FLOWFORGE_DATABASE", raising=False)
    assert "FLOWFORGE_CONFIG_DIR" in os.environ
    return tmp_path / "workspace"


def test_flowforge_run_an_example_with_development_connectors(workspace: Path) -> None:
    args = ["run", str(EXAMPLE), "--connectors", str(ROOT / "connectors")]
    result = run_cli(
        *args, "--workspace", str(workspace), "--input", json.dumps({"csv": CSV}), timeout=300
    )
    assert result.code == 0, result.stderr
    assert "run started (unsigned development connectors)" in result.stdout
    assert "encode: succeeded" in result.stdout
    assert "(ran unsigned development connectors)" in result.stdout
    assert "aWQsY3VzdG9tZXIKMSxBZGEK" in result.stdout  # base64 of "id,customer\n1,Ada\n"
    assert "run started" in result.stdout

    more = ["--workspace", str(workspace), "--input", json.dumps({"csv": CSV}), "--output", "json"]
    as_json = run_cli(*args, *more, timeout=300)
    doc = as_json.json
    assert doc["status"] == "succeeded" and doc["unsigned_dev"] is True
    assert doc["steps"]["paid"]["output"]["count"] == 1

    status = run_cli("status", "--workspace", str(workspace), "--output", "json")
    assert status.code == 0
    assert [r["status"] for r in status.json["runs"]] == ["succeeded", "succeeded"]


def test_flowforge_run_exit_codes_for_invalid_workflows_and_inputs(
    workspace: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  a:\n    uses: flowforge/csv@^0.1\n    needs: [b]\n")
    dev = ["--connectors", str(ROOT / "connectors"), "--workspace", str(workspace)]
    result = run_cli("run", str(bad), *dev)
    assert result.code == 2
    assert "the workflow has" in result.stderr
    assert "needs unknown step 'b'" in result.stderr

    result = run_cli("run", str(EXAMPLE), *dev, "--input", "{}")
    assert result.code == 2
    assert "'csv' is a required property" in result.stderr


def test_a_failing_run_exits_1(workspace: Path) -> None:
    args = ["run", str(EXAMPLE), "--connectors", str(ROOT / "connectors")]
    # Not CSV at all for the parser: the run fails, saying why.
    not_csv = json.dumps({"csv": 'a,b\n"x'})
    result = run_cli(*args, "--workspace", str(workspace), "--input", not_csv)
    assert result.code == 1, result.stdout + result.stderr
    assert "parse: failed" in result.stdout


def test_workflow_submit_list_show_diff(workspace: Path, tmp_path: Path) -> None:
    connectors = ["--connectors", str(ROOT / "connectors")]
    ws = ["--workspace", str(workspace)]
    first = run_cli("workflow", "submit", str(EXAMPLE), *connectors, *ws, timeout=300)
    assert first.code == 0, first.stderr
    assert "paid-orders-export@" in first.stdout and "stored" in first.stdout
    again = run_cli("workflow", "submit", str(EXAMPLE), *connectors, *ws)
    assert "already stored" in again.stdout
    changed = tmp_path / "changed.yaml"
    changed.write_text(EXAMPLE.read_text().replace("value: paid", "value: open"))
    second = run_cli("workflow", "submit", str(changed), *connectors, *ws)
    assert second.code == 0
    v1 = first.stdout.split("@")[1].split()[0]
    v2 = second.stdout.split("@")[1].split()[0]
    listed = run_cli("workflow", "list", *ws)
    assert "paid-orders-export" in listed.stdout and v2 in listed.stdout  # the latest
    shown = run_cli("workflow", "show", f"paid-orders-export@{v1}", *ws)
    assert shown.code == 0
    assert '"operation": "parse"' in shown.stdout
    diffed = run_cli("workflow", "diff", "paid-orders-export", v1, v2, *ws)
    assert diffed.code == 0, diffed.stderr
    assert diffed.stdout.strip() == '~ steps.paid.with.value: "paid" -> "open"'
