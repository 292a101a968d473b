"""The conformance harness: manifest examples run in the real sandbox, their HTTP served
by a local mock server, with injected faults and latency."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from flowforge.control.build import build_component
from flowforge.control.build.cache import default_cache_dir
from flowforge.runtime import Grants, HttpRequest, HttpResponse, LoadedComponent, Sandbox
from flowforge.runtime._mock_http import Scenario, match
from flowforge.runtime.conformance import FAULTS, ExampleResult, Latency, run_examples
from flowforge.runtime.manifest import ConnectorManifest, HttpExchange, parse_manifest
from flowforge.runtime.network import NetworkPolicy

WAT = Path(__file__).parents[1] / "fixtures" / "wat"
API = "https://api.example.com"

# A connector written against the Python guest SDK: its fetch maps transport errors to
# `unavailable` and `raise_for_status()` maps statuses to the conventional kinds, which
# is what the fault table reads.
SDK_APP = """
from flowforge_connector import fetch, secret


def handle(config, input):
    headers = {"authorization": "Bearer " + secret("token")} if config.get("auth") else {}
    extra = {"json": input["json"]} if "json" in input else {}
    response = fetch(
        input.get("method", "GET"), input["url"], headers=headers,
        timeout_ms=config.get("timeout_ms"), **extra,
    )
    response.raise_for_status()
    body = response.json() if response.is_json else response.text
    return {"status": response.status, "body": body}
"""


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


@pytest.fixture(scope="module")
def fetch_wat(sandbox: Sandbox) -> LoadedComponent:
    """fetch.wat: GETs the URL its input names; ok(status) or err(unavailable, reason)."""
    return sandbox.load(WAT / "fetch.wat")


@pytest.fixture(scope="module")
def python_component(sandbox: Sandbox, python_guest: Path) -> LoadedComponent:
    return sandbox.load(python_guest)


@pytest.fixture(scope="module")
def sdk_component(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> LoadedComponent:
    source = tmp_path_factory.mktemp("sdk-connector")
    (source / "app.py").write_text(SDK_APP)
    built = build_component(source, "python", cache_dir=default_cache_dir())
    return sandbox.load(built.path)


def manifest(
    examples: list[dict[str, Any]], network: list[str] | None = None, **extra: Any
) -> ConnectorManifest:
    data: dict[str, Any] = {
        "name": "acme/test",
        "version": "0.1.0",
        "description": "a connector under test",
        "language": "python",
        "license": "Apache-2.0",
        "capabilities": {"network": [] if network is None else network, "secrets": ["token"]},
        "examples": examples,
        **extra,
    }
    return parse_manifest(data)


def fetch_example(name: str = "get", url: str = f"{API}/items/1", **extra: Any) -> dict[str, Any]:
    """An example for fetch.wat, whose input is the URL and whose output is the status."""
    example: dict[str, Any] = {
        "name": name,
        "input": url,
        "http": [{"request": {"url": url}, "response": {"json": {"id": 1}}}],
        "expect": {"output": 200},
    }
    return example | extra


def only(results: list[ExampleResult]) -> ExampleResult:
    assert len(results) == 1
    return results[0]


# --- verdicts -------------------------------------------------------------------------


def test_passing_examples_report_outcome_and_costs(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    m = manifest(
        [
            {"name": "echo", "input": {"action": "echo"}, "expect": {"output": {"action": "echo"}}},
            {
                "name": "expected failure",
                "input": {"action": "fail", "kind": "not-found", "message": "no such item"},
                "expect": {"failure": "not-found"},
            },
        ]
    )
    echo, failure = run_examples(sandbox, python_component, m)
    assert (echo.name, echo.passed, echo.reason, echo.outcome) == ("echo", True, "", "success")
    assert echo.wall_ms > 0 and echo.fuel > 0 and echo.peak_memory_bytes > 0
    assert failure.passed and failure.outcome == "failure" and failure.kind == "not-found"


def test_a_wrong_expected_output_names_both_and_where(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    m = manifest(
        [
            {
                "name": "wrong",
                "input": {"action": "echo", "n": 1, "items": [1, 2]},
                "expect": {"output": {"action": "echo", "n": 2, "items": [1, 2]}},
            }
        ]
    )
    result = only(run_examples(sandbox, python_component, m))
    assert not result.passed
    assert 'expected output {"action":"echo","n":2' in result.reason
    assert 'got {"action":"echo","n":1' in result.reason
    assert "at $.n: expected 2, got 1" in result.reason


def test_json_equality_keeps_booleans_apart_from_numbers(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    m = manifest(
        [
            {
                "name": "1.0 is 1",
                "input": {"action": "echo", "v": 1},
                "expect": {"output": {"action": "echo", "v": 1.0}},
            },
            {
                "name": "true is not 1",
                "input": {"action": "echo", "v": True},
                "expect": {"output": {"action": "echo", "v": 1}},
            },
        ]
    )
    same, different = run_examples(sandbox, python_component, m)
    assert same.passed, same.reason
    assert not different.passed and "at $.v: expected 1, got true" in different.reason


def test_a_wrong_failure_kind_names_both(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    m = manifest(
        [
            {
                "name": "kind",
                "input": {"action": "fail", "kind": "unavailable", "message": "down"},
                "expect": {"failure": "not-found"},
            },
            {"name": "no failure", "input": {"action": "echo"}, "expect": {"failure": "internal"}},
        ]
    )
    kind, none = run_examples(sandbox, python_component, m)
    assert kind.reason == "expected failure not-found, got failure unavailable: down"
    assert none.reason == 'expected failure internal, got output {"action":"echo"}'


def test_schema_violations_name_the_port_path_and_message(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    schemas = {
        "config": {"type": "object", "properties": {"retries": {"type": "integer"}}},
        "input": {"type": "object", "required": ["action"]},
        "output": {"type": "object", "properties": {"n": {"type": "string"}}},
    }
    m = manifest(
        [
            {
                "name": "config",
                "config": {"retries": "3"},
                "input": {"action": "echo"},
                "expect": {"output": {}},
            },
            {"name": "input", "input": {"act": "echo"}, "expect": {"output": {}}},
            {
                "name": "output",
                "input": {"action": "echo", "n": 5},
                "expect": {"output": {"action": "echo", "n": 5}},
            },
        ],
        schemas=schemas,
    )
    config, input_, output = run_examples(sandbox, python_component, m)
    assert config.outcome == "not-run" and not config.passed
    assert config.reason == (
        "config does not match schemas.config at $.retries: '3' is not of type 'integer'"
    )
    assert (
        input_.reason == "input does not match schemas.input at $: 'action' is a required property"
    )
    assert output.outcome == "success" and not output.passed
    assert output.reason == "output does not match schemas.output at $.n: 5 is not of type 'string'"


# --- recorded HTTP --------------------------------------------------------------------


def test_a_recorded_exchange_is_served_through_the_sandbox(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    m = manifest(
        [
            {
                "name": "fetch",
                "input": {"action": "fetch", "url": f"{API}/items/1?full=1"},
                "http": [
                    {
                        "request": {"url": f"{API}/items/1?full=1"},
                        "response": {"status": 201, "body": "recorded body"},
                    }
                ],
                "expect": {"output": {"status": 201, "body": "recorded body"}},
            }
        ],
        network=["api.example.com"],
    )
    result = only(run_examples(sandbox, python_component, m))
    assert result.passed, result.reason
    assert result.http_requests == 1


def test_headers_secrets_and_json_bodies_are_matched(
    sandbox: Sandbox, sdk_component: LoadedComponent
) -> None:
    request = {
        "method": "POST",
        "url": f"{API}/items",
        "headers": {"Authorization": "Bearer t0k3n"},
        "json": {"name": "x"},
    }
    example = {
        "config": {"auth": True},
        "input": {"method": "POST", "url": f"{API}/items", "json": {"name": "x"}},
        "secrets": {"token": "t0k3n"},
        "http": [{"request": request, "response": {"status": 201, "json": {"id": 7}}}],
        "expect": {"output": {"status": 201, "body": {"id": 7}}},
    }
    wrong_body = example | {
        "name": "wrong body",
        "input": {"method": "POST", "url": f"{API}/items", "json": {"name": "y"}},
    }
    no_auth = example | {"name": "no auth", "config": {}}
    m = manifest([example | {"name": "match"}, wrong_body, no_auth], network=["*.example.com"])
    matched, body, auth = run_examples(sandbox, sdk_component, m)
    assert matched.passed, matched.reason
    assert not body.passed
    assert body.reason.startswith(
        f"the connector sent POST {API}/items which no recorded exchange matches: "
        f"POST {API}/items is recorded, but its JSON body"
    )
    assert not auth.passed
    assert "it lacks the recorded header 'Authorization'" in auth.reason


def test_an_unmatched_request_is_reported_precisely(
    sandbox: Sandbox, fetch_wat: LoadedComponent
) -> None:
    example = fetch_example(url=f"{API}/items/2")
    example["http"] = [
        {"request": {"url": f"{API}/items/1"}},
        {"request": {"method": "POST", "url": f"{API}/items"}},
    ]
    result = only(run_examples(sandbox, fetch_wat, manifest([example], ["api.example.com"])))
    assert not result.passed
    assert result.reason == (
        f"the connector sent GET {API}/items/2 which no recorded exchange matches; "
        f"recorded: GET {API}/items/1, POST {API}/items"
    )


def test_an_undeclared_host_is_refused_before_the_mock_with_a_clear_message(
    sandbox: Sandbox, fetch_wat: LoadedComponent
) -> None:
    example = fetch_example(url="https://evil.example.net/steal")
    result = only(run_examples(sandbox, fetch_wat, manifest([example], ["api.example.com"])))
    assert not result.passed
    assert result.reason.startswith(
        "the example needs evil.example.net (recorded GET https://evil.example.net/steal), "
        "which capabilities.network does not declare, so the sandbox refused the request; "
        'declare it in capabilities.network (network = ["evil.example.net"])'
    )
    # The normal grant check refused it: the connector saw the host's refusal, not the mock.
    assert "got failure unavailable: https://evil.example.net:443 is not granted" in result.reason


def test_a_connector_that_declares_no_network_reaches_nothing(
    sandbox: Sandbox, fetch_wat: LoadedComponent
) -> None:
    result = only(run_examples(sandbox, fetch_wat, manifest([fetch_example()], network=[])))
    assert not result.passed
    assert result.kind == "unavailable"
    assert "the example needs api.example.com" in result.reason
    assert "no network granted" in result.reason


def test_an_unrecorded_refused_host_is_explained(
    sandbox: Sandbox, python_component: LoadedComponent
) -> None:
    example = {
        "name": "calls elsewhere",
        "input": {"action": "fetch", "url": "https://other.example.org/"},
        "expect": {"output": {"status": 200, "body": ""}},
    }
    result = only(run_examples(sandbox, python_component, manifest([example], ["api.example.com"])))
    assert "1 request(s) never reached the mock server: the sandbox refused them" in result.reason
    assert "https://other.example.org:443 is not granted" in result.reason


def test_match_prefers_unserved_exchanges_in_order() -> None:
    exchanges = [
        HttpExchange.model_validate(
            {"request": {"url": f"{API}/poll"}, "response": {"status": 202}}
        ),
        HttpExchange.model_validate(
            {"request": {"url": f"{API}/poll"}, "response": {"status": 200}}
        ),
    ]
    assert match(exchanges, [], "GET", f"{API}/poll", [], b"") == 0
    assert match(exchanges, [0], "get", "HTTPS://API.example.com:443/poll", [], b"") == 1
    assert match(exchanges, [0, 1], "GET", f"{API}/poll", [], b"") == 1
    assert isinstance(match(exchanges, [], "GET", f"{API}/poll?x=1", [], b""), str)


# --- the network hook -----------------------------------------------------------------


def test_the_upstream_runs_after_the_grant_check_and_instead_of_dns() -> None:
    seen: list[str] = []

    def upstream(request: HttpRequest, end: float, max_bytes: int) -> HttpResponse | str:
        seen.append(request.url)
        return HttpResponse(204, [], b"")

    def no_dns(name: str) -> list[Any]:
        raise AssertionError(f"resolved {name}")

    policy = NetworkPolicy.from_patterns(["api.example.com"], resolver=no_dns)
    hooked = policy.with_upstream(upstream)
    end = time.monotonic() + 5
    granted = hooked.fetch(HttpRequest("GET", f"{API}/x"), deadline=end, max_response_bytes=100)
    assert isinstance(granted, HttpResponse) and granted.status == 204
    refused = hooked.fetch(
        HttpRequest("GET", "https://other.example.com/"), deadline=end, max_response_bytes=100
    )
    assert refused == (
        "https://other.example.com:443 is not granted; grant it with --allow-host other.example.com"
    )
    assert seen == [f"{API}/x"]
    nothing = NetworkPolicy().with_upstream(upstream)
    assert "no network granted" in str(
        nothing.fetch(HttpRequest("GET", f"{API}/x"), deadline=end, max_response_bytes=100)
    )
    assert seen == [f"{API}/x"]


def test_grants_cannot_carry_an_upstream() -> None:
    # Only host code calling Sandbox.run(network_upstream=...) can redirect the network;
    # nothing built from a workflow or a task message (a Grants) can.
    assert set(Grants.__dataclass_fields__) == {"secrets", "network"}


# --- faults and latency ---------------------------------------------------------------


def fault_table(
    results: list[ExampleResult],
) -> dict[str, tuple[str, str | None, bool, int | None]]:
    return {
        f.fault: (f.outcome, f.kind, f.retryable, f.retry_after_ms)
        for result in results
        for f in result.faults
    }


def test_faults_are_a_report_of_what_the_connector_says(
    sandbox: Sandbox, sdk_component: LoadedComponent
) -> None:
    example = {
        "name": "get",
        "config": {"timeout_ms": 700},
        "input": {"url": f"{API}/items/1"},
        "http": [{"request": {"url": f"{API}/items/1"}, "response": {"json": {"id": 1}}}],
        "expect": {"output": {"status": 200, "body": {"id": 1}}},
    }
    m = manifest([example], ["api.example.com"], limits={"timeout_s": 3})
    results = run_examples(sandbox, sdk_component, m, faults=FAULTS)
    assert results[0].passed, results[0].reason  # faults never fail an example
    assert fault_table(results) == {
        "http-500": ("failure", "unavailable", True, None),
        "http-503": ("failure", "unavailable", True, None),
        "http-429": ("failure", "rate-limited", True, 2000),
        "timeout": ("failure", "unavailable", True, None),
        "reset": ("failure", "unavailable", True, None),
    }
    timeout = next(f for f in results[0].faults if f.fault == "timeout")
    assert "timed out" in timeout.message


def test_faults_against_a_connector_without_status_mapping(
    sandbox: Sandbox, fetch_wat: LoadedComponent
) -> None:
    m = manifest(
        [fetch_example(), {"name": "no http", "input": "x", "expect": {"output": 1}}],
        ["api.example.com"],
        limits={"timeout_s": 0.5},
    )
    results = run_examples(sandbox, fetch_wat, m, faults=("http-503", "timeout", "reset"))
    # fetch.wat returns any status as its output, and sets no request timeout of its own.
    assert fault_table(results) == {
        "http-503": ("success", None, False, None),
        "timeout": ("stopped", "timeout", False, None),
        "reset": ("failure", "unavailable", True, None),
    }
    assert results[1].faults == ()  # an example without HTTP exchanges gets no fault runs


def test_latency_is_added_to_every_response(sandbox: Sandbox, fetch_wat: LoadedComponent) -> None:
    m = manifest([fetch_example()], ["api.example.com"])
    result = only(run_examples(sandbox, fetch_wat, m, latency=Latency(300, 50)))
    assert result.passed, result.reason
    assert result.wall_ms >= 300  # a lower bound only: never assert an upper timing bound


def test_scenario_jitter_stays_within_its_range() -> None:
    scenario = Scenario([], Latency(100, 20), seed=7)
    draws = [scenario.delay_s() for _ in range(200)]
    assert all(0.1 <= d <= 0.12 for d in draws) and len(set(draws)) > 1


def test_unknown_faults_are_refused(sandbox: Sandbox, fetch_wat: LoadedComponent) -> None:
    with pytest.raises(ValueError, match="unknown fault 'http-418'"):
        run_examples(sandbox, fetch_wat, manifest([]), faults=["http-418"])  # type: ignore[list-item]


def test_results_serialise_to_json(sandbox: Sandbox, fetch_wat: LoadedComponent) -> None:
    m = manifest([fetch_example()], ["api.example.com"])
    (result,) = run_examples(sandbox, fetch_wat, m, faults=["reset"])
    document = json.loads(json.dumps(result.to_json()))
    assert document["name"] == "get" and document["passed"] is True
    assert document["faults"][0]["fault"] == "reset"
    assert document["faults"][0]["retryable"] is True
