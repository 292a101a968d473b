"""Reading workflow files: every problem as file:line:column, the step and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowforge.control.workflow import (
    ApprovalPolicy,
    Position,
    WorkflowInvalid,
    load_spec,
    load_spec_text,
)
from flowforge.control.workflow.spec import ApprovalStep, ConnectorStep, CronTrigger


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        load_spec_text(text, "wf.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_valid_file_reads_into_the_model_with_defaults() -> None:
    spec = load_spec_text(
        """\
name: demo
steps:
  fetch:
    uses: flowforge/http-request@^0.1
    with: {url: "https://api.example.com/x"}
    timeout: 1m30s
  ok:
    type: approval
    needs: [fetch]
    timeout: 2h
    on_timeout: approve
triggers:
  - type: cron
    schedule: "*/5 * * * *"
""",
        "wf.yaml",
    )
    fetch = spec.steps["fetch"]
    assert isinstance(fetch, ConnectorStep)
    assert fetch.connector == "flowforge/http-request"
    assert fetch.version_range == "^0.1"
    assert fetch.config == {"url": "https://api.example.com/x"}
    assert fetch.timeout == 90.0
    assert fetch.retry.max_attempts == 1
    assert fetch.retry.retry_on == ["rate-limited", "unavailable", "timeout"]
    ok = spec.steps["ok"]
    assert isinstance(ok, ApprovalStep)
    assert (ok.timeout, ok.on_timeout) == (7200.0, "approve")
    assert isinstance(spec.triggers[0], CronTrigger)
    assert spec.source.position(("steps", "ok", "needs", 0)) == Position(9, 13)
    assert ApprovalPolicy("x", "reject").on_timeout == "reject"


def test_field_problems_are_all_reported_with_line_column_step_and_field() -> None:
    found = problems(
        """\
name: demo
steps:
  a:
    uses: flowforge/csv@^0.1
    retry:
      max_attempts: 0
    bogus: 1
  b:
    type: approval
    on_timeout: maybe
  c:
    with: {}
triggers:
  - type: cron
    schedule: "61 * * * *"
  - type: nats
    subject: "a b"
timeout: 5x
"""
    )
    assert found == [
        "wf.yaml:6:21: step 'a': retry.max_attempts: Input should be greater than or equal to 1",
        "wf.yaml:7:5: step 'a': bogus: unknown field 'bogus'",
        "wf.yaml:10:17: step 'b': on_timeout: Input should be 'approve' or 'reject'",
        "wf.yaml:11:3: step 'c': uses: 'uses' is required",
        "wf.yaml:15:15: triggers[0].schedule: '61 * * * *' is not a cron expression such as "
        "'*/5 * * * *' or '@daily'",
        "wf.yaml:17:14: triggers[1].subject: 'a b' is not a NATS subject such as "
        "orders.created (wildcards * and a final >)",
        "wf.yaml:18:10: timeout: '5x' is not a duration: write seconds (30) or a number with a "
        "unit (500ms, 30s, 5m, 1h30m, 2d)",
    ]


def test_step_ids_must_be_jmespath_identifiers() -> None:
    found = problems("name: demo\nsteps:\n  fetch-user:\n    uses: flowforge/csv@^0.1\n")
    assert found == [
        "wf.yaml:3:3: step 'fetch-user': 'fetch-user' is not a step id: letters, digits and "
        "'_', not starting with a digit"
    ]


def test_uses_needs_a_connector_name_and_a_version_range() -> None:
    found = problems(
        "name: demo\nsteps:\n  a:\n    uses: flowforge/csv\n  b:\n    uses: flowforge/csv@^x\n"
    )
    assert found[0] == (
        "wf.yaml:4:11: step 'a': uses: 'flowforge/csv' is not publisher/name@range, "
        "e.g. flowforge/http-request@^0.1"
    )
    assert found[1].startswith("wf.yaml:6:11: step 'b': uses: range '^x': 'x' is not a version")


def test_grants_and_timezones_are_checked_for_form() -> None:
    found = problems(
        """\
name: demo
steps:
  a:
    uses: flowforge/http-request@^0.1
    network: ["https://api.example.com/"]
    secrets: {token: "bad name"}
triggers:
  - {type: cron, schedule: "@daily", timezone: Mars/Olympus}
  - {type: webhook, path: hooks}
"""
    )
    assert found[0] == (
        "wf.yaml:6:22: step 'a': secrets.token: 'bad name' is not a project secret name: "
        "letters, digits, '.', '_' and '-'"
    )
    assert found[1].startswith(
        "wf.yaml:5:15: step 'a': network[0]: invalid host pattern 'https://api.example.com/': "
        "a pattern has no scheme or path"
    )
    assert found[2] == (
        "wf.yaml:8:48: triggers[0].timezone: 'Mars/Olympus' is not an IANA time zone such as "
        "Europe/Paris"
    )
    assert (
        found[3]
        == "wf.yaml:9:27: triggers[1].path: 'hooks' is not a URL path such as /hooks/orders"
    )


def test_yaml_syntax_errors_and_duplicate_keys_have_positions() -> None:
    assert problems("name: [a\n") == [
        "wf.yaml:2:1: not valid YAML: expected ',' or ']', but got '<stream end>'"
    ]
    assert problems("name: a\nsteps:\n  x: {uses: a/b@1}\n  x: {uses: a/b@2}\n") == [
        "wf.yaml:4:3: steps: duplicate key 'x' (first at line 3)"
    ]
    assert problems("") == ["wf.yaml: the file is empty; a workflow is a YAML mapping"]
    assert problems("- a\n") == ["wf.yaml:1:1: a workflow is a YAML mapping (name, steps ...)"]
    assert problems("name: a\nsteps: {}\nconcurrency: .nan\n") == [
        "wf.yaml:3:14: concurrency: '.nan' is not a finite number"
    ]


def test_a_missing_file_is_a_problem_naming_it(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert str(caught.value.problems[0]) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_anchors_and_merge_keys_read_as_plain_values() -> None:
    merged = load_spec_text(
        """\
name: demo
steps:
  a: &base
    uses: flowforge/csv@^0.1
    retry: {max_attempts: 3}
  b:
    <<: *base
    needs: [a]
""",
        "wf.yaml",
    )
    b = merged.steps["b"]
    assert isinstance(b, ConnectorStep)
    assert (b.uses, b.retry.max_attempts, b.needs) == ("flowforge/csv@^0.1", 3, ["a"])
