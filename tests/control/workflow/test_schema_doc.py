"""`docs/workflow.schema.json` is the spec model's JSON Schema, kept current."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from flowforge.control.workflow import workflow_schema_text
from flowforge.control.workflow.spec import REGENERATE, SCHEMA_DOC
from tests.cli import run_cli

from .helpers import EXAMPLES, ROOT

DOC = ROOT / SCHEMA_DOC


def test_the_committed_schema_matches_the_model() -> None:
    assert DOC.read_text(encoding="utf-8") == workflow_schema_text(), (
        f"{SCHEMA_DOC} is out of date with control/workflow/spec.py; regenerate it with "
        f"`{REGENERATE}`"
    )


def test_the_schema_accepts_the_examples_and_refuses_unknown_keys() -> None:
    schema = json.loads(DOC.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 2
    for path in examples:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], f"{path.name}: {errors}"
    data = yaml.safe_load(examples[0].read_text(encoding="utf-8"))
    data["unknown_key"] = 1
    assert not validator.is_valid(data)


def test_the_schema_command_prints_what_it_writes(tmp_path: Path) -> None:
    printed = run_cli("workflow", "schema")
    assert printed.code == 0, printed.stderr
    assert printed.stdout == workflow_schema_text()
    target = tmp_path / "workflow.schema.json"
    written = run_cli("workflow", "schema", "--write", str(target))
    assert written.code == 0, written.stderr
    assert target.read_text(encoding="utf-8") == workflow_schema_text()
