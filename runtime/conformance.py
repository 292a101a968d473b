"""Runs a connector's manifest examples in the sandbox and says precisely which pass.

Used by `flowforge connector test` and by the marketplace's conformance check. Each
example's config and input are checked against the manifest's schemas, the example runs
with exactly the secrets it names and the network the manifest declares, its HTTP
requests are answered by a local mock server from the recorded exchanges, and its outcome
is compared with `expect` (and a success checked against the output schema).

Faults (HTTP 500/503/429, a timeout, a connection reset) are injected into the examples
that make HTTP requests; they never make an example fail: they report, per example and
fault, which failure kind the connector reported and whether that kind is retryable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import jsonschema
from jsonschema.exceptions import best_match

from flowforge.runtime._addresses import parse_ip_literal
from flowforge.runtime._mock_http import FAULTS, Fault, Latency, MockServer, Scenario
from flowforge.runtime.loader import LoadedComponent
from flowforge.runtime.manifest import ConnectorManifest, Example, JsonSchema
from flowforge.runtime.network import HostPattern
from flowforge.runtime.outcome import ConnectorFailed, Outcome, SandboxStopped, Success
from flowforge.runtime.sandbox import Grants, Sandbox

__all__ = [
    "FAULTS",
    "RETRYABLE",
    "ExampleResult",
    "Fault",
    "FaultResult",
    "Latency",
    "OutcomeKind",
    "run_examples",
]

OutcomeKind = Literal["success", "failure", "stopped", "not-run"]
RETRYABLE: Final = frozenset({"unavailable", "rate-limited"})
"""Failure kinds a scheduler retries; any other kind, a sandbox stop or a success is not."""

_SHOWN: Final = 300
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LOCALHOST: Final = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
# A `timeout` fault holds the request a little past the step's limit, so the limit fires.
_HOLD_MARGIN_S: Final = 1.0
# Fault runs mostly wait (a `timeout` fault waits out the step's limit), so they run
# side by side; example runs stay one at a time so their timings are undisturbed.
_FAULT_WORKERS: Final = 8


@dataclass(frozen=True, slots=True)
class FaultResult:
    """What the connector reported when every mock response was replaced by `fault`."""

    fault: Fault
    outcome: OutcomeKind
    kind: str | None  # the failure kind, or the sandbox's stop reason
    retryable: bool
    retry_after_ms: int | None
    message: str
    wall_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "outcome": self.outcome,
            "kind": self.kind,
            "retryable": self.retryable,
            "retry_after_ms": self.retry_after_ms,
            "message": self.message,
            "wall_ms": round(self.wall_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """One example's verdict; `reason` says what differed (empty when it passed)."""

    name: str
    passed: bool
    reason: str
    outcome: OutcomeKind
    kind: str | None  # the failure kind, or the sandbox's stop reason
    wall_ms: float
    fuel: int
    peak_memory_bytes: int
    http_requests: int
    faults: tuple[FaultResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "outcome": self.outcome,
            "kind": self.kind,
            "wall_ms": round(self.wall_ms, 3),
            "fuel": self.fuel,
            "peak_memory_bytes": self.peak_memory_bytes,
            "http_requests": self.http_requests,
            "faults": [fault.to_json() for fault in self.faults],
        }


def run_examples(
    sandbox: Sandbox,
    component: LoadedComponent,
    manifest: ConnectorManifest,
    *,
    latency: Latency | None = None,
    faults: Sequence[Fault] = (),
) -> list[ExampleResult]:
    """Run every example of `manifest` on `component`; one result per example, in order.

    Each fault in `faults` is injected into a further run of every example that records
    HTTP exchanges; those runs fill `ExampleResult.faults` and never fail an example.
    """
    unknown = [fault for fault in faults if fault not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; expected one of {', '.join(FAULTS)}")
    runner = _Runner(sandbox, component, manifest, latency)
    examples = manifest.examples
    with MockServer() as mock:
        results = [runner.example(mock, example) for example in examples]
        jobs = [
            (index, fault)
            for index, example in enumerate(examples)
            if example.http and results[index].outcome != "not-run"
            for fault in faults
        ]
        if not jobs:
            return results
        with ThreadPoolExecutor(min(_FAULT_WORKERS, len(jobs)), "flowforge-faults") as pool:
            reports = list(pool.map(lambda job: runner.fault(mock, examples[job[0]], job[1]), jobs))
    for index, result in enumerate(results):
        mine = tuple(report for (i, _), report in zip(jobs, reports, strict=True) if i == index)
        results[index] = dataclasses.replace(result, faults=mine)
    return results


class _Runner:
    def __init__(
        self,
        sandbox: Sandbox,
        component: LoadedComponent,
        manifest: ConnectorManifest,
        latency: Latency | None,
    ) -> None:
        self.sandbox = sandbox
        self.component = component
        self.manifest = manifest
        self.latency = latency
        self.limits = manifest.limits.to_limits()
        self.patterns = [HostPattern.parse(p) for p in manifest.capabilities.network]

    def example(self, mock: MockServer, example: Example) -> ExampleResult:
        schemas = self.manifest.schemas
        invalid = _violation("config", schemas.config, example.config) or _violation(
            "input", schemas.input, example.input
        )
        if invalid:
            return ExampleResult(example.name, False, invalid, "not-run", None, 0.0, 0, 0, 0)
        scenario = Scenario(example.http, self.latency)
        outcome = self._run(mock, example, scenario)
        passed, reason = _judge(example, outcome, schemas.output)
        problems = [*self._undeclared(example), *_unmatched(scenario)]
        refused = outcome.stats.http_requests - scenario.forwarded
        if not passed and not problems and refused > 0:
            reason += (
                f"; {refused} request(s) never reached the mock server: the sandbox refused"
                " them (a host the connector calls must be declared in capabilities.network)"
            )
        if scenario.unmatched:
            # The root cause; what the connector made of the 599 answer adds nothing.
            passed, reason = False, "; ".join(problems)
        elif problems:
            passed = False
            reason = "; ".join([*problems, *([reason] if reason else [])])
        outcome_kind, kind = _classify(outcome)
        return ExampleResult(
            name=example.name,
            passed=passed,
            reason=reason,
            outcome=outcome_kind,
            kind=kind,
            wall_ms=outcome.stats.wall_ms,
            fuel=outcome.stats.fuel_used,
            peak_memory_bytes=outcome.stats.peak_memory_bytes,
            http_requests=outcome.stats.http_requests,
        )

    def _run(self, mock: MockServer, example: Example, scenario: Scenario) -> Outcome:
        declared = set(self.manifest.capabilities.secrets)
        grants = Grants(
            secrets={k: v for k, v in example.secrets.items() if k in declared},
            network=tuple(self.manifest.capabilities.network),
        )
        with mock.serving(scenario) as upstream:
            return self.sandbox.run(
                self.component,
                config=json.dumps(example.config),
                input=json.dumps(example.input),
                grants=grants,
                limits=self.limits,
                network_upstream=upstream,
            )

    def fault(self, mock: MockServer, example: Example, fault: Fault) -> FaultResult:
        scenario = Scenario(
            example.http,
            self.latency,
            fault=fault,
            hold_s=self.limits.timeout_s + _HOLD_MARGIN_S,
        )
        outcome = self._run(mock, example, scenario)
        outcome_kind, kind = _classify(outcome)
        retry_after: int | None = None
        message = ""
        if isinstance(outcome, ConnectorFailed):
            retry_after = outcome.failure.retry_after_ms
            message = outcome.failure.message
        elif isinstance(outcome, SandboxStopped):
            message = outcome.message
        return FaultResult(
            fault=fault,
            outcome=outcome_kind,
            kind=kind,
            retryable=outcome_kind == "failure" and kind in RETRYABLE,
            retry_after_ms=retry_after,
            message=_clip(message),
            wall_ms=outcome.stats.wall_ms,
        )

    def _undeclared(self, example: Example) -> list[str]:
        """A message for each recorded host the manifest does not declare (the sandbox
        refuses such a request by the normal grant check, before it reaches the mock)."""
        problems: list[str] = []
        seen: set[str] = set()
        for exchange in example.http:
            url = exchange.request.url
            host = _undeclared_host(self.patterns, url)
            if host is not None and host not in seen:
                seen.add(host)
                problems.append(
                    f"the example needs {host} (recorded {exchange.request.method.upper()} "
                    f"{url}), which capabilities.network does not declare, so the sandbox "
                    "refused the request; declare it in capabilities.network "
                    f'(network = ["{host}"])'
                )
        return problems


def _unmatched(scenario: Scenario) -> list[str]:
    if not scenario.unmatched:
        return []
    more = len(scenario.unmatched) - 1
    return [scenario.unmatched[0] + (f" (and {more} more unmatched request(s))" if more else "")]


def _undeclared_host(patterns: Sequence[HostPattern], url: str) -> str | None:
    """The host (with its port when not the scheme's default) of `url`, if not declared."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
        address = parse_ip_literal(host)
    except ValueError:
        return host or url
    if address is not None:
        ok = any(p.matches_address(address, port) for p in patterns)
    elif host == "localhost":
        ok = any(p.matches_address(a, port) for p in patterns for a in _LOCALHOST)
    else:
        ok = any(p.matches_name(host, port) for p in patterns)
    if ok:
        return None
    shown = f"[{host}]" if ":" in host else host
    return shown if port in (80, 443) else f"{shown}:{port}"


def _violation(port: str, schema: JsonSchema, value: Any) -> str:
    """Why `value` does not match the port's schema (the most relevant error), or ''."""
    validator = jsonschema.Draft202012Validator(schema)
    error = best_match(validator.iter_errors(value))
    if error is None:
        return ""
    return f"{port} does not match schemas.{port} at {error.json_path}: {error.message}"


def _classify(outcome: Outcome) -> tuple[OutcomeKind, str | None]:
    if isinstance(outcome, Success):
        return "success", None
    if isinstance(outcome, ConnectorFailed):
        return "failure", outcome.failure.kind
    return "stopped", outcome.reason


def _judge(example: Example, outcome: Outcome, output_schema: JsonSchema) -> tuple[bool, str]:
    """Whether the outcome is the expected one, and if not, what was expected and got."""
    expect = example.expect
    wanted = (
        f"expected failure {expect.failure}"
        if expect.failure is not None
        else f"expected output {_compact(expect.output)}"
    )
    if isinstance(outcome, SandboxStopped):
        return False, f"{wanted}, got sandbox stop {outcome.reason}: {_clip(outcome.message)}"
    if isinstance(outcome, ConnectorFailed):
        got = f"failure {outcome.failure.kind}: {_clip(outcome.failure.message)}"
        if expect.failure == outcome.failure.kind:
            return True, ""
        return False, f"{wanted}, got {got}"
    output = json.loads(outcome.output)
    invalid = _violation("output", output_schema, output)
    if expect.failure is not None:
        return False, f"{wanted}, got output {_compact(output)}"
    difference = _difference(expect.output, output, "$")
    if difference is not None:
        where = "" if difference.startswith("at $:") else f" ({difference})"
        return False, f"{wanted}, got {_compact(output)}{where}"
    if invalid:
        return False, invalid
    return True, ""


def _same_scalar(a: Any, b: Any) -> bool:
    # JSON has no bool/number overlap (Python's True == 1 does); 1 and 1.0 are one number.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _difference(expected: Any, got: Any, path: str) -> str | None:
    """Where two JSON values first differ, as `at PATH: ...`, or None if they are equal."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key, value in expected.items():
            where = f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"
            if key not in got:
                return f"at {where}: missing, expected {_compact(value)}"
            found = _difference(value, got[key], where)
            if found:
                return found
        for key in got:
            if key not in expected:
                return f"at {path}: unexpected key {json.dumps(key)}"
        return None
    if isinstance(expected, list) and isinstance(got, list):
        for index, (a, b) in enumerate(zip(expected, got, strict=False)):
            found = _difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(expected) != len(got):
            return f"at {path}: expected {len(expected)} items, got {len(got)}"
        return None
    if isinstance(expected, dict | list) or isinstance(got, dict | list):
        return f"at {path}: expected {_compact(expected)}, got {_compact(got)}"
    if not _same_scalar(expected, got):
        return f"at {path}: expected {_compact(expected)}, got {_compact(got)}"
    return None


def _compact(value: Any) -> str:
    return _clip(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
