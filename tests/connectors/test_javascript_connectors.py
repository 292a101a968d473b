"""The JavaScript connectors (filter, regex, slack), the JavaScript SDK and its template,
and the JavaScript builder: each connector builds and passes `flowforge connector test`,
and the SDK and connectors behave as documented."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.control.build import javascript as js_builder
from flowforge.runtime import Grants, HttpRequest, HttpResponse, LoadedComponent, Outcome, Sandbox
from tests.cli import run_cli
from tests.connectors.support import (
    BUILD_TIMEOUT_S,
    CONNECTORS,
    call,
    connector_test,
    failed,
    load,
    output,
    passes_its_examples,
)
from tests.local_http import QuietHandler, serving

JS_CONNECTORS = ["filter", "regex", "slack"]
SDK_GUEST = Path(__file__).resolve().parent / "js_sdk"
WEBHOOK = "https://hooks.slack.com/services/T0001/B0001/s3cr3tT0k3n"


def _load(sandbox: Sandbox, folder: Path) -> LoadedComponent:
    return load(sandbox, folder, "javascript")


@pytest.fixture(scope="module")
def sdk(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, SDK_GUEST)


@pytest.fixture(scope="module")
def filter_(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, CONNECTORS / "filter")


@pytest.fixture(scope="module")
def regex(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, CONNECTORS / "regex")


@pytest.fixture(scope="module")
def slack(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, CONNECTORS / "slack")


# --- flowforge connector test ------------------------------------------------------------


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("name", JS_CONNECTORS)
def test_connector_passes_its_examples(name: str) -> None:
    passes_its_examples(name)


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_slack_reports_injected_faults_as_retryable_and_never_shows_the_webhook() -> None:
    result = connector_test(
        CONNECTORS / "slack", "--fault", "http-503", "--fault", "http-429", "--fault", "reset"
    )
    faults = [f for example in result.json["examples"] for f in example["faults"]]
    assert faults, "the HTTP examples ran with faults"
    assert all(f["retryable"] for f in faults), faults
    assert {f["kind"] for f in faults} == {"unavailable", "rate-limited"}
    assert "s3cr3tT0k3n" not in result.stdout + result.stderr


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_a_new_javascript_connector_builds_and_passes_as_generated(tmp_path: Path) -> None:
    created = run_cli(
        "connector", "new", "acme/greeter", "--lang", "javascript",
        "--description", "Greets people", "--dir", str(tmp_path),
    )  # fmt: skip
    assert created.code == 0, created.stderr
    folder = tmp_path / "greeter"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "connector.toml", "index.js"]
    assert "{{" not in (folder / "connector.toml").read_text()
    built = run_cli("connector", "build", str(folder), timeout=BUILD_TIMEOUT_S)
    assert built.code == 0, built.stderr
    assert (folder / "dist" / "greeter.wasm").is_file()
    tested = connector_test(folder)
    assert tested.json["connector"] == "acme/greeter"
    assert tested.json["summary"] == {"total": 3, "passed": 3, "failed": 0}


# --- the builder and its toolchain ----------------------------------------------------------


def test_the_component_imports_only_the_host(sdk: LoadedComponent) -> None:
    # componentize-qjs runs with --stub-wasi: nothing of WASI is left to link.
    assert not sdk.imports_wasi


def test_missing_node_is_a_toolchain_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match=r"Node\.js 18\+"):
        js_builder.tools()


def test_the_compiler_version_names_the_lock_file() -> None:
    compiler = {tool.name: tool for tool in js_builder.tools()}["componentize-qjs"]
    assert compiler.version.startswith("componentize-qjs@0.4.5+lock.")
    assert js_builder.lock_hash()[:16] in compiler.version
    assert compiler.executable.parent.parent.parent == js_builder.toolchain_dir()


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_the_toolchain_installs_once_into_a_folder_named_by_the_lock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWFORGE_CACHE_DIR", str(tmp_path))
    root = tmp_path / "toolchains"
    root.mkdir()
    # The debris of a killed install: a scratch folder, never mistaken for the toolchain.
    (root / f".{js_builder.toolchain_dir().name}-killed").mkdir()
    said: list[str] = []
    npm = {tool.name: tool for tool in js_builder.tools()}["npm"].executable
    compiler = js_builder.ensure_toolchain(npm, said.append)
    assert compiler.is_file()
    assert compiler.is_relative_to(root / f"js-{js_builder.lock_hash()[:16]}")
    assert any("npm ci" in line for line in said)
    # Only the finished toolchain and the old debris remain: no scratch of this install.
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [js_builder.toolchain_dir().name, f".{js_builder.toolchain_dir().name}-killed"]
    )
    said.clear()
    assert js_builder.ensure_toolchain(npm, said.append) == compiler
    assert said == []


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_a_syntax_error_fails_the_build_with_the_location(tmp_path: Path) -> None:
    (tmp_path / "index.js").write_text("export function handle(config, input) {\n  return {;\n}\n")
    with pytest.raises(BuildError, match="componentize-qjs") as caught:
        build_component(tmp_path, "javascript", cache_dir=tmp_path / "cache")
    assert "index.js" in str(caught.value)


# --- the SDK ---------------------------------------------------------------------------------


def test_config_and_input_arrive_parsed_and_the_result_goes_back_as_json(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    got = output(call(sandbox, sdk, {"a": [1, None]}, {"action": "echo", "t": "é"}))
    assert got == {"config": {"a": [1, None]}, "input": {"action": "echo", "t": "é"}}
    assert output(call(sandbox, sdk, {}, {"action": "nothing"})) is None


def test_unparseable_config_and_input_are_reported_by_the_sdk(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    bad_config = failed(sandbox.run(sdk, config="{nope", input="{}"))
    assert bad_config.failure.kind == "invalid-config"
    assert "config is not valid JSON" in bad_config.failure.message
    bad_input = failed(sandbox.run(sdk, config="{}", input="nope"))
    assert bad_input.failure.kind == "invalid-input"


def test_a_failure_carries_its_kind_message_and_retry_after(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    thrown = {
        "action": "fail",
        "kind": "rate-limited",
        "message": "slow down",
        "retryAfterMs": 1500,
    }
    got = failed(call(sandbox, sdk, {}, thrown)).failure
    assert (got.kind, got.message, got.retry_after_ms) == ("rate-limited", "slow down", 1500)
    plain = failed(call(sandbox, sdk, {}, {"action": "failLikeObject"})).failure
    assert (plain.kind, plain.message) == ("not-found", "plain object")


def test_other_errors_are_internal_with_the_stack_logged(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    outcome = failed(call(sandbox, sdk, {}, {"action": "throwError"}))
    assert outcome.failure.kind == "internal"
    assert outcome.failure.message == "RangeError: out of range"
    assert any("index.js" in line.message for line in outcome.logs if line.level == "debug")
    bad_kind = failed(call(sandbox, sdk, {}, {"action": "badKind"})).failure
    assert bad_kind.kind == "internal" and "unknown failure kind" in bad_kind.message
    bigint = failed(call(sandbox, sdk, {}, {"action": "bigint"})).failure
    assert bigint.kind == "internal" and "BigInt" in bigint.message


@pytest.mark.parametrize(
    ("action", "what"),
    [("now", "Date.now()"), ("newDate", "new Date()"), ("random", "Math.random()")],
)
def test_clock_and_randomness_fail_clearly_instead_of_trapping(
    sandbox: Sandbox, sdk: LoadedComponent, action: str, what: str
) -> None:
    got = failed(call(sandbox, sdk, {}, {"action": action})).failure
    assert got.kind == "internal"
    assert what in got.message and "not available in the connector sandbox" in got.message


def test_dates_from_values_still_work(sandbox: Sandbox, sdk: LoadedComponent) -> None:
    assert output(call(sandbox, sdk, {}, {"action": "fixedDate"})) == "2024-01-02T03:04:05.000Z"


def test_an_async_handle_is_refused_with_advice(sandbox: Sandbox, sdk: LoadedComponent) -> None:
    got = failed(call(sandbox, sdk, {}, {"action": "async"})).failure
    assert got.kind == "internal" and "synchronous" in got.message


def test_secret_returns_the_value_or_fails_unauthorized(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    granted = call(sandbox, sdk, {}, {"action": "secret", "name": "token"}, {"token": "abcd"})
    assert output(granted) == {"length": 4}
    refused = failed(call(sandbox, sdk, {}, {"action": "secret", "name": "token"})).failure
    assert refused.kind == "unauthorized" and "token" in refused.message


def test_log_helpers_reach_the_host_at_their_levels(sandbox: Sandbox, sdk: LoadedComponent) -> None:
    outcome = call(sandbox, sdk, {}, {"action": "log"})
    assert [(line.level, line.message) for line in outcome.logs] == [
        ("trace", "t"),
        ("debug", 'd 1 {"a":1}'),
        ("info", "i"),
        ("warn", "w"),
        ("error", "Error: boom"),
        ("info", "at"),
    ]


def test_utf8_round_trips_and_malformed_bytes_become_replacement_characters(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    text = "héllo €𝄞"
    got = output(call(sandbox, sdk, {}, {"action": "utf8", "text": text}))
    assert bytes(got["bytes"]) == text.encode()
    assert got["back"] == text
    assert got["lossy"] == "a\ufffdb\ufffd"


def test_retry_after_reads_seconds_and_dates_against_the_date_header(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    later = "Wed, 21 Oct 2015 07:28:30 GMT"
    values = [["30", None], ["1.5", None], [" 2 ", None], [later, date], [later, None],
              [None, date], ["-1", None]]  # fmt: skip
    got = output(call(sandbox, sdk, {}, {"action": "retryAfter", "values": values}))
    assert got == [30000, None, 2000, 30000, None, None, None]


class _Service(QuietHandler):
    """A local HTTP service: /status/N answers N; anything else echoes the request."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
            retry = [("Retry-After", "7")] if status in (429, 503) else []
            self.reply(status, b"nope: too many", [*retry, ("Content-Type", "text/plain")])
        else:
            payload = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "content_type": self.headers.get("content-type"),
                    "x_token": self.headers.get("x-token"),
                    "body": body.decode(),
                }
            ).encode()
            multi = [("X-Multi", "a"), ("X-Multi", "b")]
            self.reply(200, payload, [("Content-Type", "application/json"), *multi])


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    with serving(_Service) as port:
        yield f"127.0.0.1:{port}"


def test_fetch_sends_json_and_headers_and_reads_the_response(
    sandbox: Sandbox, sdk: LoadedComponent, service: str
) -> None:
    request = {
        "action": "fetch",
        "url": f"http://{service}/items?q=1",
        "options": {"method": "post", "headers": {"X-Token": "t"}, "json": {"name": "€"}},
    }
    got = output(call(sandbox, sdk, {}, request, network=(service,)))
    assert got["status"] == 200 and got["ok"] is True
    assert got["type"] == "application/json"
    assert got["headers"]["x-multi"] == "a, b"
    assert got["json"] == {
        "method": "POST",
        "path": "/items?q=1",
        "content_type": "application/json",
        "x_token": "t",
        "body": '{"name":"€"}',
    }


def test_fetch_hands_back_error_statuses_and_a_non_json_body(
    sandbox: Sandbox, sdk: LoadedComponent, service: str
) -> None:
    request = {"action": "fetch", "url": f"http://{service}/status/404"}
    got = output(call(sandbox, sdk, {}, request, network=(service,)))
    assert (got["status"], got["ok"], got["text"]) == (404, False, "nope: too many")
    assert got["json"] == {"error": "unavailable"}


@pytest.mark.parametrize(
    ("status", "kind", "retry_after_ms"),
    [
        (429, "rate-limited", 7000),
        (503, "unavailable", 7000),
        (500, "unavailable", None),
        (401, "unauthorized", None),
        (403, "unauthorized", None),
        (404, "not-found", None),
        (400, "invalid-input", None),
        (422, "invalid-input", None),
    ],
)
def test_raise_for_status_follows_the_retryability_convention(
    sandbox: Sandbox,
    sdk: LoadedComponent,
    service: str,
    status: int,
    kind: str,
    retry_after_ms: int | None,
) -> None:
    request = {"action": "fetch", "url": f"http://{service}/status/{status}", "raise": True}
    got = failed(call(sandbox, sdk, {}, request, network=(service,))).failure
    assert (got.kind, got.retry_after_ms) == (kind, retry_after_ms)
    assert f"answered HTTP {status}: nope: too many" in got.message


def test_transport_errors_are_unavailable_with_the_hosts_message(
    sandbox: Sandbox, sdk: LoadedComponent
) -> None:
    refused = {"action": "fetch", "url": "http://127.0.0.1:9/x?token=hidden"}
    got = failed(call(sandbox, sdk, {}, refused, network=("127.0.0.1:9",))).failure
    assert got.kind == "unavailable"
    assert got.message.startswith("GET http://127.0.0.1:9: ")
    assert "hidden" not in got.message  # only the origin: a query may hold a token
    not_granted = failed(call(sandbox, sdk, {}, {"action": "fetch", "url": "http://example.com/"}))
    assert not_granted.failure.kind == "unavailable"
    assert "example.com" in not_granted.failure.message


# --- filter ------------------------------------------------------------------------------------

ITEMS = [
    {"id": 1, "name": "alpha", "n": 5, "tags": ["x", "y"], "meta": {"k": {"v": 1}}},
    {"id": 2, "name": "Beta", "n": 10, "tags": [], "meta": {"k": {"v": 2}}},
    {"id": 3, "name": "gamma", "n": "10", "tags": ["y"]},
]


def kept(sandbox: Sandbox, component: LoadedComponent, condition: Any, items: Any = None) -> Any:
    got = output(call(sandbox, component, condition, {"items": ITEMS if items is None else items}))
    assert got["count"] == len(got["items"])
    return [item["id"] if isinstance(item, dict) else item for item in got["items"]]


@pytest.mark.parametrize(
    ("condition", "ids"),
    [
        ({"field": "n", "op": "eq", "value": 10}, [2]),  # "10" is a string: not equal to 10
        ({"field": "n", "op": "ne", "value": 10}, [1, 3]),
        ({"field": "n", "op": "lt", "value": 10}, [1]),  # strings never compare with numbers
        ({"field": "name", "op": "gte", "value": "beta"}, [3]),  # string order: "B" < "b"
        ({"field": "name", "op": "contains", "value": "amm"}, [3]),
        ({"field": "tags", "op": "contains", "value": "y"}, [1, 3]),
        ({"field": "tags.0", "op": "eq", "value": "x"}, [1]),
        ({"field": "name", "op": "matches", "value": "^b", "flags": "i"}, [2]),
        ({"field": "meta", "op": "exists"}, [1, 2]),
        ({"field": "meta.k.v", "op": "exists", "value": False}, [3]),
        ({"field": "meta.missing", "op": "ne", "value": 1}, [1, 2, 3]),  # missing: only ne
        ({"field": "meta.k", "op": "eq", "value": {"v": 2}}, [2]),  # JSON equality
        ({"field": "id", "op": "in", "value": [3, 1, 99]}, [1, 3]),
        ({"any": []}, []),
        ({"all": []}, [1, 2, 3]),
        (
            {
                "not": {
                    "any": [
                        {"field": "id", "op": "eq", "value": 1},
                        {"field": "n", "op": "gt", "value": 7},
                    ]
                }
            },
            [3],
        ),
    ],
)
def test_filter_conditions(
    sandbox: Sandbox, filter_: LoadedComponent, condition: Any, ids: list[int]
) -> None:
    assert kept(sandbox, filter_, condition) == ids


def test_filter_on_the_items_themselves(sandbox: Sandbox, filter_: LoadedComponent) -> None:
    condition = {"field": "", "op": "in", "value": ["a", 2]}
    assert kept(sandbox, filter_, condition, ["a", "b", 2, "2", None]) == ["a", 2]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"field": "x", "op": "like", "value": 1}, "config.op: must be one of"),
        ({"field": "x", "op": "eq"}, 'op "eq" needs a value'),
        ({"field": "x", "op": "gt", "value": [1]}, "compares with a number or a string"),
        ({"all": [{"field": "x", "op": "matches", "value": "("}]}, "config.all[0].value"),
        ({"any": {"field": "x"}}, "config.any: must be an array"),
        ({"field": "x", "op": "eq", "value": 1, "all": []}, '"all" stands alone'),
        ({"field": 3, "op": "eq", "value": 1}, "config.field"),
        ({"field": "x", "op": "exists", "value": "yes"}, "true (the default) or false"),
    ],
)
def test_filter_refuses_a_bad_condition_before_any_item(
    sandbox: Sandbox, filter_: LoadedComponent, condition: Any, message: str
) -> None:
    got = failed(call(sandbox, filter_, condition, {"items": []})).failure
    assert got.kind == "invalid-config"
    assert message in got.message


def test_filter_needs_a_list_of_items(sandbox: Sandbox, filter_: LoadedComponent) -> None:
    condition = {"field": "x", "op": "exists"}
    assert failed(call(sandbox, filter_, condition, {"items": {}})).failure.kind == "invalid-input"


def test_filter_never_evaluates_the_config(sandbox: Sandbox, filter_: LoadedComponent) -> None:
    # A field name that would be code anywhere that evaluated it is just a missing key.
    condition = {"field": "constructor.constructor", "op": "exists"}
    assert kept(sandbox, filter_, condition) == []


# --- regex ---------------------------------------------------------------------------------------


def test_regex_unmatched_groups_are_null_and_unicode_works(
    sandbox: Sandbox, regex: LoadedComponent
) -> None:
    config = {"pattern": r"(?<word>\p{L}+)(?<num>\d+)?", "flags": "u"}
    got = output(call(sandbox, regex, config, {"text": "héllo 𝄞 wörld42"}))
    assert [m["match"] for m in got["matches"]] == ["héllo", "wörld42"]
    assert got["matches"][0]["groups"] == ["héllo", None]
    assert got["matches"][0]["named"] == {"word": "héllo", "num": None}
    assert got["matches"][1]["named"] == {"word": "wörld", "num": "42"}


def test_regex_no_match_and_first_only(sandbox: Sandbox, regex: LoadedComponent) -> None:
    assert output(call(sandbox, regex, {"pattern": "z"}, {"text": "abc"})) == {
        "matches": [],
        "count": 0,
    }
    first = output(call(sandbox, regex, {"pattern": r"\d", "all": False}, {"text": "a1b2"}))
    assert [m["match"] for m in first["matches"]] == ["1"]
    replaced = {"mode": "replace", "pattern": "a", "replacement": "$$&", "flags": "i"}
    assert output(call(sandbox, regex, replaced, {"text": "AbA"})) == {"text": "$&b$&", "count": 2}
    assert output(call(sandbox, regex, {"mode": "test", "pattern": "^x"}, {"text": "y"})) == {
        "matched": False
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"pattern": "a", "flags": "g"}, "flags may hold only"),
        ({"pattern": "a", "flags": "ii"}, "not a valid regular expression"),
        ({"pattern": ""}, "pattern must be a non-empty string"),
        ({"pattern": "a", "mode": "split"}, "mode must be one of"),
        ({"pattern": "(?<a>x)(?<a>y)"}, "not a valid regular expression"),
    ],
)
def test_regex_config_errors(
    sandbox: Sandbox, regex: LoadedComponent, config: Any, message: str
) -> None:
    got = failed(call(sandbox, regex, config, {"text": "x"})).failure
    assert got.kind == "invalid-config"
    assert message in got.message


def test_regex_text_must_be_a_string(sandbox: Sandbox, regex: LoadedComponent) -> None:
    got = failed(call(sandbox, regex, {"pattern": "a"}, {"text": 3})).failure
    assert got.kind == "invalid-input"


# --- slack ---------------------------------------------------------------------------------------


class FakeSlack:
    """Stands in for hooks.slack.com behind the sandbox's network check (the test hook the
    conformance harness uses): records each request and answers with a canned response."""

    def __init__(self, status: int = 200, body: str = "ok", headers: dict[str, str] | None = None):
        self.answer: HttpResponse | str = HttpResponse(
            status, list((headers or {}).items()), body.encode()
        )
        self.requests: list[HttpRequest] = []

    def __call__(
        self, request: HttpRequest, _deadline: float, _max_bytes: int
    ) -> HttpResponse | str:
        self.requests.append(request)
        return self.answer


def post(
    sandbox: Sandbox, slack: LoadedComponent, fake: FakeSlack, input: Any, config: Any = None
) -> Outcome:
    return sandbox.run(
        slack,
        config=json.dumps(config or {}),
        input=json.dumps(input),
        grants=Grants(secrets={"webhook-url": WEBHOOK}, network=("hooks.slack.com",)),
        network_upstream=fake,
    )


def test_slack_posts_json_to_the_webhook(sandbox: Sandbox, slack: LoadedComponent) -> None:
    fake = FakeSlack()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    message = {"text": "hi", "blocks": blocks, "thread_ts": "1.2"}
    assert output(post(sandbox, slack, fake, message, {"icon_emoji": ":x:"})) == {"ok": True}
    [sent] = fake.requests
    assert (sent.method, sent.url) == ("POST", WEBHOOK)
    assert ("content-type", "application/json") in sent.headers
    assert json.loads(sent.body) == {**message, "icon_emoji": ":x:"}


@pytest.mark.parametrize(
    ("status", "body", "kind", "retry_after_ms"),
    [
        (404, "no_service", "not-found", None),
        (404, "channel_not_found", "not-found", None),
        (410, "channel_is_archived", "not-found", None),
        (403, "invalid_token", "unauthorized", None),
        (403, "action_prohibited", "unauthorized", None),
        (400, "invalid_payload", "invalid-input", None),
        (429, "rate_limited", "rate-limited", 30000),
        (500, "", "unavailable", None),
        (502, "bad gateway", "unavailable", None),
    ],
)
def test_slack_maps_its_answers_to_failure_kinds_without_showing_the_webhook(
    sandbox: Sandbox,
    slack: LoadedComponent,
    status: int,
    body: str,
    kind: str,
    retry_after_ms: int | None,
) -> None:
    fake = FakeSlack(status, body, {"Retry-After": "30"} if status == 429 else None)
    outcome = failed(post(sandbox, slack, fake, {"text": "hi"}))
    assert (outcome.failure.kind, outcome.failure.retry_after_ms) == (kind, retry_after_ms)
    assert outcome.failure.message.startswith("Slack")
    shown = outcome.failure.message + "".join(line.message for line in outcome.logs)
    assert "s3cr3tT0k3n" not in shown and "services/" not in shown


def test_slack_transport_errors_are_unavailable_without_the_webhook(
    sandbox: Sandbox, slack: LoadedComponent
) -> None:
    fake = FakeSlack()
    fake.answer = f"connection reset while talking to {WEBHOOK}"
    got = failed(post(sandbox, slack, fake, {"text": "hi"})).failure
    assert got.kind == "unavailable"
    assert "s3cr3tT0k3n" not in got.message  # the host scrubs granted secrets from errors


def test_slack_refuses_a_webhook_elsewhere_and_bad_input(
    sandbox: Sandbox, slack: LoadedComponent
) -> None:
    elsewhere = sandbox.run(
        slack,
        input=json.dumps({"text": "hi"}),
        grants=Grants(secrets={"webhook-url": "https://evil.example/hook/s3cr3t"}),
    )
    got = failed(elsewhere).failure
    assert got.kind == "invalid-config" and "s3cr3t" not in got.message
    bad_inputs: list[dict[str, Any]] = [
        {"text": ""},
        {"text": "x", "blocks": [{"no": "type"}]},
        {"blocks": []},
    ]
    for bad in bad_inputs:
        refused = failed(post(sandbox, slack, FakeSlack(), bad)).failure
        assert refused.kind == "invalid-input", bad


def test_toolchain_files_are_shipped_with_the_sdk() -> None:
    folder = js_builder.toolchain_source()
    assert json.loads((folder / "package.json").read_text())["dependencies"] == {
        "componentize-qjs": "0.4.5"
    }
    lock = json.loads((folder / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/componentize-qjs"]["version"] == "0.4.5"
