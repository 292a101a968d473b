"""`flowforge connector test`: run a connector's manifest examples in the sandbox.

The engine is `flowforge.runtime.conformance` (the marketplace's conformance check uses it
too); this module builds the connector, parses the options and prints the results.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.runtime import LoadedComponent, LoadError, Sandbox
from flowforge.runtime.conformance import (
    FAULTS,
    ExampleResult,
    Fault,
    FaultResult,
    Latency,
    run_examples,
)
from flowforge.runtime.manifest import ConnectorManifest, ManifestError, load_manifest

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")
_REASON_WIDTH = 100


def _duration_ms(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 200ms or 0.2s")
    value = float(match.group(1))
    return value * 1000 if match.group(2) == "s" else value


def _latency(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Latency | None:
    if value is None:
        return None
    fixed, _, jitter = value.partition(",")
    try:
        return Latency(_duration_ms(fixed), _duration_ms(jitter) if jitter else 0.0)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; expected LATENCY[,JITTER], e.g. 200ms,50ms") from None


def _faults(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> list[Fault]:
    chosen: list[Fault] = []
    for name in value:
        for fault in FAULTS if name == "all" else [f for f in FAULTS if f == name]:
            if fault not in chosen:
                chosen.append(fault)
    return chosen


class _Stop(Exception):
    """A usage, manifest, build or load error: exit 2 with its message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _component(
    sandbox: Sandbox, directory: Path, manifest: ConnectorManifest, component: Path | None
) -> LoadedComponent:
    if component is None:
        try:
            built = build_component(
                directory, manifest.language, progress=lambda line: click.echo(line, err=True)
            )
        except (BuildError, ToolchainError) as exc:
            raise _Stop("build-error", str(exc)) from None
        component = built.path
    try:
        return sandbox.load(component)
    except LoadError as exc:
        raise _Stop("load-error", str(exc)) from None


@click.command("test")
@click.argument(
    "directory",
    default=".",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="[DIR]",
)
@click.option(
    "--component",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Test this component (.wasm, or component .wat) instead of building DIR.",
)
@click.option(
    "--latency",
    callback=_latency,
    metavar="LATENCY[,JITTER]",
    help="Delay every mock HTTP response, e.g. 200ms or 200ms,50ms (fixed plus up to JITTER).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    callback=_faults,
    type=click.Choice([*FAULTS, "all"]),
    help="Also run each example that makes HTTP requests with this fault injected into every "
    "mock response (repeatable); reports which failures the connector calls retryable. "
    "`timeout` holds each request past the step's limits.timeout_s; `reset` closes the "
    "connection abruptly; http-429 carries Retry-After: 2.",
)
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or one JSON document.",
)
def test(
    directory: Path,
    component: Path | None,
    latency: Latency | None,
    faults: list[Fault],
    output: str,
) -> None:
    """Run every example in DIR/connector.toml in the sandbox and check the results.

    Each example's config and input are checked against the manifest's schemas; it runs
    with the secrets it names and the network the manifest declares; its recorded HTTP
    exchanges are served by a local mock server (a request no exchange matches, or to a
    host the manifest does not declare, fails the example); its output or failure kind
    is compared with `expect`. DIR is built first (progress on stderr) unless
    --component is given.

    \b
    Exit codes: 0 every example passed; 1 an example failed (or there are none);
    2 usage, manifest, build or load error.

    \b
    Example:
      flowforge connector test connectors/http-request --latency 200ms,50ms \\
        --fault http-503 --fault timeout
    """
    as_json = output == "json"
    sandbox = Sandbox()
    try:
        try:
            manifest = load_manifest(directory)
        except ManifestError as exc:
            raise _Stop("manifest-error", str(exc)) from None
        loaded = _component(sandbox, directory, manifest, component)
        results = run_examples(sandbox, loaded, manifest, latency=latency, faults=faults)
    except _Stop as stop:
        _fail(as_json, stop.kind, str(stop))
    finally:
        sandbox.close()
    passed = bool(results) and all(result.passed for result in results)
    if as_json:
        click.echo(json.dumps(_document(manifest, loaded, latency, faults, results, passed)))
    else:
        _print_tables(manifest, results)
    sys.exit(EXIT_PASSED if passed else EXIT_FAILED)


def _fail(as_json: bool, kind: str, message: str) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": {"kind": kind, "message": message}}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _document(
    manifest: ConnectorManifest,
    loaded: LoadedComponent,
    latency: Latency | None,
    faults: list[Fault],
    results: list[ExampleResult],
    passed: bool,
) -> dict[str, Any]:
    failed = sum(not result.passed for result in results)
    return {
        "ok": passed,
        "connector": manifest.name,
        "version": manifest.version,
        "component_sha256": loaded.sha256,
        "latency": None
        if latency is None
        else {"fixed_ms": latency.fixed_ms, "jitter_ms": latency.jitter_ms},
        "faults": list(faults),
        "summary": {"total": len(results), "passed": len(results) - failed, "failed": failed},
        "examples": [result.to_json() for result in results],
    }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    # The last column (a reason or message) is not padded: it may be long.
    widths[-1] = 0
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_WIDTH else text[: _REASON_WIDTH - 3] + "..."


def _reported(fault: FaultResult) -> str:
    if fault.outcome == "success":
        return "success"
    label = "failure" if fault.outcome == "failure" else "stopped"
    return f"{label} {fault.kind}"


def _print_tables(manifest: ConnectorManifest, results: list[ExampleResult]) -> None:
    if not results:
        click.echo(f"{manifest.name}: connector.toml has no [[examples]]; add at least one")
        return
    rows = [
        [
            result.name,
            "pass" if result.passed else "FAIL",
            f"{result.wall_ms:.1f}",
            # The full reason, unclipped: it is what the author needs to fix the example.
            result.reason,
        ]
        for result in results
    ]
    for line in _table(["EXAMPLE", "RESULT", "MS", "REASON"], rows):
        click.echo(line)
    fault_rows = [
        [
            result.name,
            fault.fault,
            _reported(fault),
            "yes" if fault.retryable else "no",
            "-" if fault.retry_after_ms is None else str(fault.retry_after_ms),
            f"{fault.wall_ms:.1f}",
            _clip(fault.message),
        ]
        for result in results
        for fault in result.faults
    ]
    if fault_rows:
        click.echo("")
        click.echo("Injected faults (which failures the connector reports as retryable):")
        header = ["EXAMPLE", "FAULT", "REPORTED", "RETRYABLE", "RETRY-AFTER-MS", "MS", "MESSAGE"]
        for line in _table(header, fault_rows):
            click.echo(line)
    failed = sum(not result.passed for result in results)
    click.echo("")
    click.echo(
        f"{manifest.name}: {len(results) - failed} passed, {failed} failed "
        f"({len(results)} example(s))"
    )
