"""The Python connectors (http-request, json-transform, template, datetime, llm-chat) and
the Python SDK's template: each builds and passes `flowforge connector test`, and does what
a user relies on (URL encoding, secrets kept out of outputs and logs, DST-correct time
zones, a real OpenAI-compatible endpoint)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from flowforge.control.build import build_component
from flowforge.control.build.cache import default_cache_dir
from flowforge.runtime import ConnectorFailed, LoadedComponent, Sandbox, Success
from tests.cli import run_cli
from tests.connectors.support import (
    CONNECTORS,
    call,
    connector_test,
    failure_kind,
    load,
    output,
    passes_its_examples,
)
from tests.local_http import QuietHandler, serving

PYTHON_CONNECTORS = ["http-request", "json-transform", "template", "datetime", "llm-chat"]
# A first build runs componentize-py (and pip for requirements.txt): tens of seconds on a
# loaded 2-core machine; a rerun is a cache hit.
BUILD_TIMEOUT_S = 600.0
SECRET = "sk-Very-Secret-9f3a"


def _load(sandbox: Sandbox, name: str) -> LoadedComponent:
    return load(sandbox, CONNECTORS / name, "python")


# -- every connector passes its own examples ---------------------------------------------


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
@pytest.mark.parametrize("name", PYTHON_CONNECTORS)
def test_connector_builds_and_passes_its_examples(name: str) -> None:
    report = passes_its_examples(name, failure_example=False, timeout=BUILD_TIMEOUT_S)
    assert report["ok"] is True


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_the_template_builds_and_passes_as_generated(tmp_path: Path) -> None:
    made = run_cli(
        "connector", "new", "acme/hello-py", "--lang", "python", "--dir", str(tmp_path),
        "--description", "Says hello",
    )  # fmt: skip
    assert made.code == 0, made.stdout + made.stderr
    folder = tmp_path / "hello-py"
    assert "acme/hello-py" in (folder / "connector.toml").read_text()
    assert "{{" not in (folder / "app.py").read_text()
    tested = connector_test(folder, timeout=BUILD_TIMEOUT_S)
    assert tested.json["summary"]["failed"] == 0


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_retryable_faults_are_reported_as_such() -> None:
    result = connector_test(
        CONNECTORS / "http-request", "--fault", "http-503", "--fault", "http-429",
        "--fault", "reset", timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    examples = {example["name"]: example for example in result.json["examples"]}
    # With fail_on_status = false the connector hands any status back as output, by design.
    passthrough = examples.pop("with fail_on_status = false an error status is output")
    assert {f["outcome"] for f in passthrough["faults"] if f["fault"] != "reset"} == {"success"}
    faults = [f for example in examples.values() for f in example.get("faults", [])]
    assert faults
    assert all(f["retryable"] for f in faults), faults
    assert {f["kind"] for f in faults if f["fault"] == "http-429"} == {"rate-limited"}


# -- a local HTTP server: the only network these tests reach -----------------------------


@dataclass
class Seen:
    """What the local server received."""

    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    delay_s: float = 0.0


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen.paths.append(self.path)
            seen.headers.append({k.lower(): v for k, v in self.headers.items()})
            seen.bodies.append(json.loads(raw) if raw else None)
            time.sleep(seen.delay_s)
            if seen.replies:
                status, headers, document = seen.replies.pop(0)
            else:
                # Echo what arrived, as a careless API might (credentials included).
                status, headers, document = (
                    200,
                    {},
                    {"path": self.path, "headers": seen.headers[-1]},
                )
            body = json.dumps(document).encode()
            self.reply(status, body, [("Content-Type", "application/json"), *headers.items()])

        do_GET = do_POST = _serve

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[int, Seen]]:
    seen = Seen()
    with serving(_handler(seen)) as port:
        yield port, seen


# -- http-request ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_request(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, "http-request")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("../admin", "/users/..%2Fadmin/profile"),
        ("a?b=c#d", "/users/a%3Fb%3Dc%23d/profile"),
        ("Zoë & co", "/users/Zo%C3%AB%20%26%20co/profile"),
        (42, "/users/42/profile"),
    ],
)
def test_url_template_values_are_percent_encoded(
    sandbox: Sandbox, http_request: LoadedComponent, server: tuple[int, Seen], value: Any, path: str
) -> None:
    port, seen = server
    config = {"url": f"http://127.0.0.1:{port}/users/{{id}}/profile"}
    outcome = call(sandbox, http_request, config, {"id": value}, network=(f"127.0.0.1:{port}",))
    assert output(outcome)["status"] == 200
    assert seen.paths == [path]


def test_query_and_json_body_are_sent(
    sandbox: Sandbox, http_request: LoadedComponent, server: tuple[int, Seen]
) -> None:
    port, seen = server
    config = {"url": f"http://127.0.0.1:{port}/items", "method": "POST"}
    body = {"name": "ünï", "n": [1, 2]}
    request = {"query": {"q": "a&b", "k": [1, 2]}, "body": body}
    outcome = call(sandbox, http_request, config, request, network=(f"127.0.0.1:{port}",))
    assert output(outcome)["status"] == 200
    assert seen.paths == ["/items?q=a%26b&k=1&k=2"]
    assert seen.bodies == [body]
    assert seen.headers[0]["content-type"] == "application/json"


def test_the_secret_never_reaches_output_or_logs(
    sandbox: Sandbox, http_request: LoadedComponent, server: tuple[int, Seen]
) -> None:
    port, seen = server
    config = {"url": f"http://127.0.0.1:{port}/me", "auth": {"scheme": "header", "header": "X-Key"}}
    secrets, network = {"token": SECRET}, (f"127.0.0.1:{port}",)
    # The server echoes the request's headers back; the credential did go out...
    outcome = call(sandbox, http_request, config, {}, secrets, network)
    assert seen.headers[0]["x-key"] == SECRET
    # ...but the step's output and logs never hold it.
    assert isinstance(outcome, Success)
    assert SECRET not in outcome.output
    assert output(outcome)["body"]["headers"]["x-key"] == "***"
    assert all(SECRET not in line.message for line in outcome.logs)
    # Nor does a failure message quoting an error body that echoes it.
    seen.replies.append((401, {}, {"error": f"bad key {SECRET}"}))
    failed = call(sandbox, http_request, config, {}, secrets, network)
    assert isinstance(failed, ConnectorFailed) and failed.failure.kind == "unauthorized"
    assert SECRET not in failed.failure.message
    assert all(SECRET not in line.message for line in failed.logs)


def test_429_carries_retry_after(
    sandbox: Sandbox, http_request: LoadedComponent, server: tuple[int, Seen]
) -> None:
    port, seen = server
    seen.replies.append((429, {"Retry-After": "3"}, {"error": "slow down"}))
    config = {"url": f"http://127.0.0.1:{port}/x"}
    outcome = call(sandbox, http_request, config, {}, network=(f"127.0.0.1:{port}",))
    assert isinstance(outcome, ConnectorFailed)
    assert (outcome.failure.kind, outcome.failure.retry_after_ms) == ("rate-limited", 3000)


def test_a_host_not_granted_is_unavailable(
    sandbox: Sandbox, http_request: LoadedComponent, server: tuple[int, Seen]
) -> None:
    port, seen = server
    outcome = call(sandbox, http_request, {"url": f"http://127.0.0.1:{port}/x"}, {})
    assert failure_kind(outcome) == "unavailable"
    assert seen.paths == []


def test_a_hung_server_is_a_retryable_failure_not_a_stop(
    sandbox: Sandbox, http_request: LoadedComponent, server: tuple[int, Seen]
) -> None:
    port, seen = server
    seen.delay_s = 2.0
    config = {"url": f"http://127.0.0.1:{port}/slow", "timeout_ms": 300}
    started = time.monotonic()
    outcome = call(sandbox, http_request, config, {}, network=(f"127.0.0.1:{port}",))
    assert failure_kind(outcome) == "unavailable"
    assert time.monotonic() - started < 1.5


# -- datetime ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def datetime_connector(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, "datetime")


@pytest.mark.parametrize(
    ("instant", "local"),
    [
        # New York falls back at 06:00 UTC on 3 Nov 2024: 01:30 happens twice.
        ("2024-11-03T05:30:00Z", "2024-11-03T01:30:00-04:00"),
        ("2024-11-03T06:30:00Z", "2024-11-03T01:30:00-05:00"),
        # ...and springs forward at 07:00 UTC on 10 Mar 2024: 02:00-03:00 never happens.
        ("2024-03-10T06:59:00Z", "2024-03-10T01:59:00-05:00"),
        ("2024-03-10T07:00:00Z", "2024-03-10T03:00:00-04:00"),
        # Southern hemisphere: Sydney is on daylight time in January.
        ("2025-01-15T00:00:00Z", "2025-01-15T11:00:00+11:00"),
    ],
)
def test_time_zone_conversion_follows_dst(
    sandbox: Sandbox, datetime_connector: LoadedComponent, instant: str, local: str
) -> None:
    zone = "Australia/Sydney" if local.endswith("+11:00") else "America/New_York"
    result = output(
        call(sandbox, datetime_connector, {"operation": "convert", "to": zone}, {"value": instant})
    )
    assert result["iso"] == local
    assert result["timezone"] == zone


def test_shifting_across_fall_back_keeps_days_on_the_wall_clock(
    sandbox: Sandbox, datetime_connector: LoadedComponent
) -> None:
    config = {"operation": "shift", "timezone": "America/New_York"}
    start = {"value": "2024-11-02T12:00:00"}
    one_day = output(call(sandbox, datetime_connector, config, {**start, "days": 1}))
    day_hours = output(call(sandbox, datetime_connector, config, {**start, "hours": 24}))
    assert one_day["iso"] == "2024-11-03T12:00:00-05:00"
    assert day_hours["iso"] == "2024-11-03T11:00:00-05:00"
    assert one_day["timestamp"] - day_hours["timestamp"] == 3600


def test_a_wall_time_in_the_spring_gap_moves_forward(
    sandbox: Sandbox, datetime_connector: LoadedComponent
) -> None:
    config = {"operation": "parse", "timezone": "America/New_York"}
    result = output(call(sandbox, datetime_connector, config, {"value": "2024-03-10T02:30:00"}))
    assert result["iso"] == "2024-03-10T03:30:00-04:00"


# -- template and json-transform -------------------------------------------------------


def test_template_names_the_missing_field(sandbox: Sandbox) -> None:
    template = _load(sandbox, "template")
    outcome = call(sandbox, template, {"template": "Hi ${user.email} ${x}"}, {"user": {}, "x": 1})
    assert isinstance(outcome, ConnectorFailed)
    assert outcome.failure.kind == "invalid-input"
    assert "user.email" in outcome.failure.message


def test_json_transform_invalid_expression_is_invalid_config(sandbox: Sandbox) -> None:
    transform = _load(sandbox, "json-transform")
    assert failure_kind(call(sandbox, transform, {"expression": "a[?"}, {})) == "invalid-config"
    assert output(call(sandbox, transform, {"expression": "a[-1]"}, {"a": [1, 2]})) == {"result": 2}


# -- llm-chat against a local fake OpenAI-compatible endpoint -----------------------------


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_llm_chat_against_a_local_fake_endpoint(server: tuple[int, Seen]) -> None:
    port, seen = server
    component = build_component(CONNECTORS / "llm-chat", "python", cache_dir=default_cache_dir())
    config = json.dumps(
        {"base_url": f"http://127.0.0.1:{port}", "model": "fake-mini", "temperature": 0,
         "system_prompt": "Be brief."}
    )  # fmt: skip
    args = [
        "connector", "run", str(component.path), "--config", config,
        "--input", json.dumps({"prompt": "Say hi"}),
        "--allow-host", f"127.0.0.1:{port}", "--secret", f"api-key={SECRET}",
    ]  # fmt: skip

    seen.replies.append((200, {}, _completion("Hi there!")))
    ok = run_cli(*args)
    assert ok.code == 0, ok.stdout + ok.stderr
    assert ok.json["output"] == {
        "text": "Hi there!",
        "finish_reason": "stop",
        "model": "fake-mini",
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
    assert seen.paths == ["/v1/chat/completions"]
    assert seen.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert seen.bodies[0] == {
        "model": "fake-mini",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ],
    }
    assert SECRET not in ok.stdout

    seen.replies.append((429, {"Retry-After": "12"}, {"error": {"message": "rate limit"}}))
    limited = run_cli(*args)
    assert limited.code == 1, limited.stdout + limited.stderr
    error = limited.json["error"]
    assert (error["kind"], error["retry_after_ms"]) == ("rate-limited", 12000)

    refused = run_cli(*args[:-4])  # no --allow-host, no secret
    assert refused.code == 1
    assert refused.json["error"]["kind"] == "unauthorized"
