"""Real connectors built from source (tests/guests: Python via componentize-py, Zig by hand-
written canonical ABI) run through the sandbox: every action, in both languages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowforge.runtime import (
    ConnectorFailed,
    Grants,
    LoadedComponent,
    LogLine,
    Outcome,
    Sandbox,
    SandboxStopped,
    Success,
)
from tests.cli import run_cli
from tests.local_http import QuietHandler, serving

SECRET = "s3cr3t-Value-42"
LANGUAGES = ["python", "zig"]


class _Hello(QuietHandler):
    def do_GET(self) -> None:
        self.reply(200, f"héllo from {self.path}".encode())


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    """A local HTTP server: the only network these tests ever reach."""
    with serving(_Hello) as port:
        yield port


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture(scope="module", params=LANGUAGES)
def guest(request: pytest.FixtureRequest, sandbox: Sandbox) -> LoadedComponent:
    path: Path = request.getfixturevalue(f"{request.param}_guest")
    return sandbox.load(path)


def run(sandbox: Sandbox, guest: LoadedComponent, request: Any, grants: Grants | None = None,
        ) -> Outcome:  # fmt: skip
    text = request if isinstance(request, str) else json.dumps(request)
    return sandbox.run(guest, config="{}", input=text, grants=grants)


def output(outcome: Outcome) -> Any:
    assert isinstance(outcome, Success), outcome
    return json.loads(outcome.output)


def failure(outcome: Outcome) -> tuple[str, str, int | None]:
    assert isinstance(outcome, ConnectorFailed), outcome
    return outcome.failure.kind, outcome.failure.message, outcome.failure.retry_after_ms


def test_echo_returns_the_input(sandbox: Sandbox, guest: LoadedComponent) -> None:
    request = {"action": "echo", "n": [1, 2.5, None, True], "text": "ünïcode ✓"}
    assert output(run(sandbox, guest, request)) == request


def test_log_reaches_the_step_log_at_its_level(sandbox: Sandbox, guest: LoadedComponent) -> None:
    outcome = run(sandbox, guest, {"action": "log", "level": "warn", "message": "careful"})
    assert output(outcome) == {"logged": True}
    assert outcome.logs == [LogLine("warn", "careful", "host")]


def test_a_granted_secret_is_read_and_masked_in_the_output(
    sandbox: Sandbox, guest: LoadedComponent
) -> None:
    grants = Grants(secrets={"api-key": SECRET})
    outcome = run(sandbox, guest, {"action": "secret", "name": "api-key"}, grants)
    assert output(outcome) == {"value": "***"}
    assert isinstance(outcome, Success) and SECRET not in outcome.output


def test_a_secret_not_granted_is_refused(sandbox: Sandbox, guest: LoadedComponent) -> None:
    grants = Grants(secrets={"api-key": SECRET})
    kind, message, _ = failure(run(sandbox, guest, {"action": "secret", "name": "db"}, grants))
    assert kind == "unauthorized"
    assert "'db'" in message and "not granted" in message
    assert SECRET not in message


def test_secret_values_are_scrubbed_from_logs(sandbox: Sandbox, guest: LoadedComponent) -> None:
    grants = Grants(secrets={"api-key": SECRET})
    request = {"action": "log", "level": "error", "message": f"token={SECRET};"}
    outcome = run(sandbox, guest, request, grants)
    assert outcome.logs == [LogLine("error", "token=***;", "host")]


def test_fetch_without_a_grant_fails_unavailable(
    sandbox: Sandbox, guest: LoadedComponent, server_port: int
) -> None:
    url = f"http://127.0.0.1:{server_port}/x"
    kind, message, _ = failure(run(sandbox, guest, {"action": "fetch", "url": url}))
    assert kind == "unavailable"
    assert "no network" in message


def test_fetch_with_a_grant_reaches_the_local_server(
    sandbox: Sandbox, guest: LoadedComponent, server_port: int
) -> None:
    url = f"http://127.0.0.1:{server_port}/path"
    grants = Grants(network=(f"127.0.0.1:{server_port}",))
    assert output(run(sandbox, guest, {"action": "fetch", "url": url}, grants)) == {
        "status": 200,
        "body": "héllo from /path",
    }


def test_a_grant_for_another_port_does_not_open_this_one(
    sandbox: Sandbox, guest: LoadedComponent, server_port: int
) -> None:
    url = f"http://127.0.0.1:{server_port}/"
    grants = Grants(network=(f"127.0.0.1:{server_port + 1 if server_port < 65535 else 1}",))
    kind, _, _ = failure(run(sandbox, guest, {"action": "fetch", "url": url}, grants))
    assert kind == "unavailable"


@pytest.mark.parametrize(
    ("kind", "retry_after_ms"), [("rate-limited", 1500), ("not-found", None), ("internal", None)]
)
def test_fail_returns_the_connectors_failure(
    sandbox: Sandbox, guest: LoadedComponent, kind: str, retry_after_ms: int | None
) -> None:
    request: dict[str, Any] = {"action": "fail", "kind": kind, "message": "as asked"}
    if retry_after_ms is not None:
        request["retry_after_ms"] = retry_after_ms
    assert failure(run(sandbox, guest, request)) == (kind, "as asked", retry_after_ms)


@pytest.mark.parametrize("text", ["not json", "{", ""])
def test_input_that_is_not_json_is_invalid_input(
    sandbox: Sandbox, guest: LoadedComponent, text: str
) -> None:
    kind, _, _ = failure(run(sandbox, guest, text))
    assert kind == "invalid-input"


def test_an_unknown_action_is_invalid_input(sandbox: Sandbox, guest: LoadedComponent) -> None:
    kind, _, _ = failure(run(sandbox, guest, {"action": "dance"}))
    assert kind == "invalid-input"


def test_each_invocation_starts_fresh(sandbox: Sandbox, guest: LoadedComponent) -> None:
    # The Zig guest resets its arena after each call and the sandbox makes a new store;
    # either way a long run of calls behaves the same as the first.
    for i in range(20):
        assert output(run(sandbox, guest, {"action": "echo", "i": i})) == {"action": "echo", "i": i}


async def test_run_async_gives_the_same_outcome(sandbox: Sandbox, guest: LoadedComponent) -> None:
    request = {"action": "fail", "kind": "unavailable", "message": "later", "retry_after_ms": 5}
    outcome = await sandbox.run_async(guest, input=json.dumps(request))
    assert failure(outcome) == ("unavailable", "later", 5)


def test_python_print_traps_because_wasi_is_stubbed(sandbox: Sandbox, python_guest: Path) -> None:
    # componentize-py --stub-wasi replaces every WASI import with a trap, so a bare print()
    # stops the guest instead of reaching the step log. Connectors log through host.log.
    outcome = run(sandbox, sandbox.load(python_guest), {"action": "print", "message": "hi"})
    assert isinstance(outcome, SandboxStopped), outcome
    assert outcome.reason == "trap"


def test_the_cli_runs_a_built_guest_with_grants(zig_guest: Path, server_port: int) -> None:
    url = f"http://127.0.0.1:{server_port}/cli"
    request = json.dumps({"action": "fetch", "url": url})
    refused = run_cli("connector", "run", str(zig_guest), "--input", request)
    assert refused.code == 1, refused.stderr
    assert refused.json["error"]["kind"] == "unavailable"
    allowed = run_cli(
        "connector", "run", str(zig_guest), "--input", request,
        "--allow-host", f"127.0.0.1:{server_port}",
    )  # fmt: skip
    assert allowed.code == 0, allowed.stderr
    assert allowed.json["output"] == {"status": 200, "body": "héllo from /cli"}


def test_config_that_is_not_json_is_invalid_config(
    sandbox: Sandbox, guest: LoadedComponent
) -> None:
    outcome = sandbox.run(guest, config="{oops", input='{"action": "echo"}')
    kind, _, _ = failure(outcome)
    assert kind == "invalid-config"
