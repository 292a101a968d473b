"""`docs/connector-manifest.schema.json` is the manifest model's JSON Schema, kept current."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema

from flowforge.control.cli.connector.schema import REGENERATE, schema_text
from flowforge.runtime.manifest import parse_manifest
from tests.cli import run_cli

SCHEMA_DOC = Path(__file__).parents[2] / "docs" / "connector-manifest.schema.json"

MANIFEST = """\
name = "flowforge/http-request"
version = "0.1.0"
description = "Call a REST endpoint"
language = "python"
license = "Apache-2.0"
world = "flowforge:connector@0.1.0"

[capabilities]
network = ["api.example.com"]
secrets = ["token"]

[limits]
memory_mib = 64
timeout_s = 10

[schemas.input]
type = "object"
required = ["url"]
properties.url = { type = "string" }

[[examples]]
name = "GET a JSON document"
config = { method = "GET" }
input = { url = "https://api.example.com/items/1" }
secrets = { token = "t0k3n" }
[[examples.http]]
request = { method = "GET", url = "https://api.example.com/items/1" }
response = { status = 200, json = { id = 1 } }
[examples.expect]
output = { status = 200, body = { id = 1 } }
"""


def test_the_committed_schema_matches_the_model() -> None:
    assert SCHEMA_DOC.read_text(encoding="utf-8") == schema_text(), (
        f"{SCHEMA_DOC.name} is out of date with runtime/manifest.py; regenerate it with "
        f"`{REGENERATE}`"
    )


def test_the_schema_is_a_draft_2020_12_schema_that_accepts_a_valid_manifest() -> None:
    schema = json.loads(SCHEMA_DOC.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    data = tomllib.loads(MANIFEST)
    parse_manifest(data)  # the model accepts it ...
    jsonschema.Draft202012Validator(schema).validate(data)  # ... and so does the schema
    data["unknown_key"] = 1
    assert not jsonschema.Draft202012Validator(schema).is_valid(data)


def test_the_schema_command_prints_what_it_writes(tmp_path: Path) -> None:
    printed = run_cli("connector", "schema")
    assert printed.code == 0, printed.stderr
    assert printed.stdout == schema_text()
    target = tmp_path / "schema.json"
    written = run_cli("connector", "schema", "--write", str(target))
    assert written.code == 0, written.stderr
    assert target.read_text(encoding="utf-8") == schema_text()
