"""The CLI with no server configured: each command runs the API server in its own
process over the workspace and calls it like any client."""

from __future__ import annotations

import json

import yaml

from .conftest import Workspace


def test_submit_start_watch_get_list_logs(workspace: Workspace) -> None:
    trivial = str(workspace.files / "trivial3.yaml")
    first = workspace.cli("workflow", "submit", trivial)
    assert first.code == 0, first.stderr
    assert "trivial3@" in first.stdout and " stored (version " in first.stdout
    assert "  a: acme/echo@1.0.0 sha256:" in first.stdout
    again = workspace.cli("workflow", "submit", trivial, "--output", "json")
    assert again.code == 0 and again.json["created"] is False
    assert again.json["steps"] == ["a", "b", "c"]

    started = workspace.cli("run", "start", "trivial3", "--input", '{"n": 7}', "--output", "json")
    assert started.code == 0, started.stderr
    run = started.json
    assert run["status"] == "succeeded", run  # in-process: carried on until it finished
    assert [s["output"] for s in run["steps"]] == [{"n": 7}] * 3

    watched = workspace.cli("run", "start", "trivial3", "--input", '{"n": 8}', "--watch")
    assert watched.code == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert any(line.endswith(" run started") for line in lines)  # one line per event
    assert sum(": succeeded in " in line for line in lines) == 3
    assert any("run succeeded" in line for line in lines)

    got = workspace.cli("run", "get", run["id"], "--output", "yaml")
    assert got.code == 0
    assert yaml.safe_load(got.stdout)["output"] is not None
    table = workspace.cli("run", "get", run["id"])
    assert f"run {run['id']}  succeeded" in table.stdout and "STEP" in table.stdout

    listed = workspace.cli("run", "list", "--output", "json")
    assert listed.code == 0
    assert len(listed.json["runs"]) == 2
    assert {r["workflow"] for r in listed.json["runs"]} == {"trivial3"}
    paged = workspace.cli("run", "list", "--limit", "1", "--output", "json")
    token = paged.json["next_page_token"]
    assert len(paged.json["runs"]) == 1 and token
    rest = workspace.cli("run", "list", "--limit", "1", "--page-token", token, "--output", "json")
    assert [r["id"] for r in rest.json["runs"]] != [r["id"] for r in paged.json["runs"]]

    logs = workspace.cli("run", "logs", run["id"], "--output", "json")
    assert logs.code == 0, logs.stderr
    for line in logs.stdout.splitlines():
        assert json.loads(line)["run"] == run["id"]

    shown = workspace.cli("workflow", "show", "trivial3")
    assert shown.code == 0 and shown.stdout.startswith("# trivial3@")
    assert '"uses": "acme/echo@^1"' in shown.stdout
    listed_workflows = workspace.cli("workflow", "list", "--output", "yaml")
    assert [w["name"] for w in yaml.safe_load(listed_workflows.stdout)["workflows"]] == ["trivial3"]


def test_workflow_diff_between_two_versions(workspace: Workspace) -> None:
    one = workspace.cli(
        "workflow", "submit", str(workspace.files / "trivial3.yaml"), "--output", "json"
    )
    changed = workspace.workflow(
        "changed",
        (workspace.files / "trivial3.yaml")
        .read_text()
        .replace("steps.b.output.n", "steps.a.output.n"),
    )
    two = workspace.cli("workflow", "submit", str(changed), "--output", "json")
    assert one.code == 0 and two.code == 0
    v1, v2 = one.json["version"][:12], two.json["version"][:12]
    diffed = workspace.cli("workflow", "diff", "trivial3", v1, v2)
    assert diffed.code == 0, diffed.stderr
    assert "~ steps.c.input.n:" in diffed.stdout
    assert "~ steps.c.needs" in diffed.stdout or "steps.c.needs" in diffed.stdout
    same = workspace.cli("workflow", "diff", "trivial3", v1, v1)
    assert same.stdout.strip() == "(the same version)"


def test_approve_reject_and_cancel_a_waiting_run(workspace: Workspace) -> None:
    assert workspace.cli("workflow", "submit", str(workspace.files / "approval.yaml")).code == 0
    ids = []
    for amount in (1, 2, 3):
        started = workspace.cli(
            "run",
            "start",
            "approval",
            "--input",
            json.dumps({"amount": amount}),
            "--output",
            "json",
        )
        assert started.code == 0, started.stderr
        assert started.json["status"] not in ("succeeded", "failed"), started.json
        ids.append(started.json["id"])
    approve, reject, cancel = ids

    approved = workspace.cli("run", "approve", approve, "sign_off", "--comment", "ok")
    assert approved.code == 0, approved.stderr
    assert f"approved step sign_off of run {approve} (run now succeeded)" in approved.stdout
    rejected = workspace.cli(
        "run", "reject", reject, "sign_off", "--comment", "no", "--output", "json"
    )
    assert rejected.code == 0, rejected.stderr
    assert rejected.json["status"] == "failed"
    cancelled = workspace.cli("run", "cancel", cancel, "--output", "json")
    assert cancelled.code == 0 and cancelled.json["status"] == "cancelled"

    again = workspace.cli("run", "approve", reject, "sign_off")
    assert again.code == 1
    assert "FAILED_PRECONDITION" in again.stderr
    retried = workspace.cli("run", "retry", reject, "--output", "json")
    assert retried.code == 0, retried.stderr
    assert retried.json["retry_of"] == reject and retried.json["id"] != reject


def test_errors_name_the_problem_and_set_the_exit_code(workspace: Workspace) -> None:
    unknown = workspace.cli("run", "get", "r-nope")
    assert unknown.code == 1
    assert "error: NOT_FOUND: " in unknown.stderr and "r-nope" in unknown.stderr
    as_json = workspace.cli("run", "get", "r-nope", "--output", "json")
    assert as_json.json["error"]["kind"] == "not-found"

    broken = str(workspace.files / "broken.yaml")
    invalid = workspace.cli("workflow", "submit", broken)
    assert invalid.code == 2
    assert "INVALID_ARGUMENT" in invalid.stderr
    assert f"{broken}:5:" in invalid.stderr and "nope" in invalid.stderr  # line:col
    assert f"{broken}:7:" in invalid.stderr and "acme/missing" in invalid.stderr

    no_workflow = workspace.cli("run", "start", "never-submitted")
    assert no_workflow.code == 1 and "NOT_FOUND" in no_workflow.stderr
    no_file = workspace.cli("run", "start", "missing.yaml")
    assert no_file.code == 2 and "no such file: missing.yaml" in no_file.stderr

    assert workspace.cli("workflow", "submit", str(workspace.files / "trivial3.yaml")).code == 0
    bad_input = workspace.cli("run", "start", "trivial3", "--input", "{not json")
    assert bad_input.code == 2 and "--input is not valid JSON" in bad_input.stderr
