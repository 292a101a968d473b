"""Plain helpers the connector tests share: where the connectors are, building and loading
one into a sandbox, running it with JSON in and out, and `flowforge connector test`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowforge.control.build import Language, build_component
from flowforge.control.build.cache import default_cache_dir
from flowforge.runtime import ConnectorFailed, Grants, LoadedComponent, Outcome, Sandbox, Success
from tests.cli import CliResult, run_cli

ROOT = Path(__file__).resolve().parents[2]
CONNECTORS = ROOT / "connectors"
# A first build of a connector takes a while on a loaded machine; a rerun is a cache hit.
BUILD_TIMEOUT_S = 300.0


def load(sandbox: Sandbox, folder: Path, language: Language) -> LoadedComponent:
    """Build the connector in `folder` (through the shared build cache) and load it."""
    built = build_component(folder, language, cache_dir=default_cache_dir())
    return sandbox.load(built.path)


def call(
    sandbox: Sandbox,
    component: LoadedComponent,
    config: Any,
    input: Any,
    secrets: Mapping[str, str] | None = None,
    network: tuple[str, ...] = (),
) -> Outcome:
    """Run `component` with `config` and `input` as JSON, granted `secrets` and `network`."""
    return sandbox.run(
        component,
        config=json.dumps(config),
        input=json.dumps(input),
        grants=Grants(secrets=secrets or {}, network=network),
    )


def output(outcome: Outcome) -> Any:
    """The parsed output of a run that must have succeeded."""
    assert isinstance(outcome, Success), outcome
    return json.loads(outcome.output)


def failed(outcome: Outcome) -> ConnectorFailed:
    """A run that must have failed, as such."""
    assert isinstance(outcome, ConnectorFailed), outcome
    return outcome


def failure_kind(outcome: Outcome) -> str:
    """The failure kind of a run that must have failed."""
    return failed(outcome).failure.kind


def connector_test(folder: Path, *options: str, timeout: float = BUILD_TIMEOUT_S) -> CliResult:
    """`flowforge connector test FOLDER --output json OPTIONS...`, which must pass."""
    result = run_cli(
        "connector", "test", str(folder), "--output", "json", *options, timeout=timeout
    )
    assert result.code == 0, result.stdout + result.stderr
    return result


def passes_its_examples(
    name: str, *, failure_example: bool = True, timeout: float = BUILD_TIMEOUT_S
) -> dict[str, Any]:
    """`flowforge connector test` on connectors/NAME: it is flowforge/NAME, no example fails,
    there are at least five of them and (with `failure_example`) one expects a failure.
    Returns the JSON report for further checks."""
    report: dict[str, Any] = connector_test(CONNECTORS / name, timeout=timeout).json
    assert report["connector"] == f"flowforge/{name}"
    summary = report["summary"]
    assert summary["failed"] == 0 and summary["total"] >= 5, summary
    if failure_example:
        assert any(example["outcome"] == "failure" for example in report["examples"])
    return report
