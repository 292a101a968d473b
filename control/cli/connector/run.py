"""`flowforge connector run`: one invocation of a component in the sandbox, as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from flowforge.runtime import (
    ConnectorFailed,
    Grants,
    Limits,
    LoadError,
    Outcome,
    Sandbox,
    SandboxStopped,
)
from flowforge.runtime.limits import MIB
from flowforge.runtime.network import GrantError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3


def _emit(payload: dict[str, Any], code: int) -> NoReturn:
    click.echo(json.dumps(payload, ensure_ascii=False))
    sys.exit(code)


def _usage_error(kind: str, message: str) -> NoReturn:
    _emit({"ok": False, "error": {"kind": kind, "message": message}, "logs": []}, EXIT_USAGE)


def _json_argument(option: str, text: str) -> str:
    """The JSON text of an option: inline, `@file`, or `-` for stdin; checked to parse."""
    source = text
    if text == "-":
        source = sys.stdin.read()
    elif text.startswith("@"):
        try:
            source = Path(text[1:]).read_text()
        except OSError as exc:
            _usage_error("usage", f"{option}: cannot read {text[1:]}: {exc.strerror}")
    try:
        json.loads(source)
    except ValueError as exc:
        _usage_error("usage", f"{option} is not valid JSON: {exc}; quote it, e.g. '{{\"a\": 1}}'")
    return source


def _secrets(pairs: tuple[str, ...]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            _usage_error("usage", f"--secret {pair.split('=')[0]!r}: expected NAME=VALUE")
        secrets[name] = value
    return secrets


def outcome_payload(outcome: Outcome) -> tuple[dict[str, Any], int]:
    """The `connector run` JSON document for an outcome, and the exit code it maps to."""
    logs = [{"level": ln.level, "message": ln.message, "source": ln.source} for ln in outcome.logs]
    stats = {
        "wall_ms": round(outcome.stats.wall_ms, 3),
        "fuel_used": outcome.stats.fuel_used,
        "peak_memory_bytes": outcome.stats.peak_memory_bytes,
        "http_requests": outcome.stats.http_requests,
    }
    error: dict[str, Any]
    if isinstance(outcome, SandboxStopped):
        error = {"kind": outcome.reason, "message": outcome.message}
        return {"ok": False, "error": error, "logs": logs, "stats": stats}, EXIT_STOPPED
    if isinstance(outcome, ConnectorFailed):
        failure = outcome.failure
        error = {"kind": failure.kind, "message": failure.message}
        if failure.retry_after_ms is not None:
            error["retry_after_ms"] = failure.retry_after_ms
        return {"ok": False, "error": error, "logs": logs, "stats": stats}, EXIT_FAILURE
    output = json.loads(outcome.output)
    return {"ok": True, "output": output, "logs": logs, "stats": stats}, EXIT_OK


@click.command("run")
@click.argument("component", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--input",
    "input_json",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The step input: JSON text, @FILE, or - for stdin.",
)
@click.option(
    "--config",
    "config_json",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The connector configuration: JSON text, @FILE, or - for stdin.",
)
@click.option(
    "--secret",
    "secret_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Grant a secret (repeatable). Its value is masked in logs and outputs.",
)
@click.option(
    "--allow-host",
    "hosts",
    multiple=True,
    metavar="PATTERN",
    help="Grant network access: example.com, *.example.com, example.com:8443, "
    "127.0.0.1:8123 (repeatable). No grant, no network.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Wall-clock limit in seconds.",
)
@click.option(
    "--memory",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Memory limit in MiB.",
)
@click.option(
    "--fuel",
    type=click.IntRange(min=1),
    default=Limits().fuel,
    show_default=True,
    help="Fuel budget (about one unit per wasm instruction).",
)
def run(
    component: Path,
    input_json: str,
    config_json: str,
    secret_pairs: tuple[str, ...],
    hosts: tuple[str, ...],
    timeout: float,
    memory: int,
    fuel: int,
) -> None:
    """Run one component's `invoke` in the sandbox and print one JSON object.

    This is the development path for a bare .wasm (or component .wat) file; workflows
    load only signed packages.

    \b
    Exit codes: 0 ok; 1 the connector returned a failure; 2 usage or load error;
    3 the sandbox stopped it (timeout, fuel-exhausted, memory-limit, trap,
    output-too-large).

    \b
    Example:
      flowforge connector run dist/http.wasm --input '{"url": "https://example.com"}' \\
        --allow-host example.com --secret token=abc123 --timeout 5
    """
    input_text = _json_argument("--input", input_json)
    config_text = _json_argument("--config", config_json)
    secrets = _secrets(secret_pairs)
    limits = Limits(memory_bytes=memory * MIB, timeout_s=timeout, fuel=fuel)
    sandbox = Sandbox()
    try:
        loaded = sandbox.load(component)
        grants = Grants(secrets=secrets, network=hosts)
        outcome = sandbox.run(
            loaded, config=config_text, input=input_text, grants=grants, limits=limits
        )
    except LoadError as exc:
        _usage_error("load-error", str(exc))
    except GrantError as exc:
        _usage_error("usage", f"--allow-host: {exc}")
    payload, code = outcome_payload(outcome)
    _emit(payload, code)
