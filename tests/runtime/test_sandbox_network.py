"""A guest reaches only the hosts it was granted, checked on the resolved address,
end to end through `host.fetch` (fetch.wat returns the status or the host's reason)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from flowforge.runtime import ConnectorFailed, Grants, LoadedComponent, Sandbox, Success
from tests.cli import run_cli
from tests.local_http import QuietHandler, serving

WAT = Path(__file__).parents[1] / "fixtures" / "wat"


class _Handler(QuietHandler):
    redirect_to = ""

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        self.reply(200, b'{"hello": "world"}')


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    """Two local servers: the granted one, and another that must stay unreachable."""
    with ExitStack() as stack:
        ports = (stack.enter_context(serving(_Handler)), stack.enter_context(serving(_Handler)))
        _Handler.redirect_to = f"http://127.0.0.1:{ports[1]}/"
        yield ports


@pytest.fixture(scope="module")
def fetch() -> tuple[Sandbox, LoadedComponent]:
    sandbox = Sandbox()
    return sandbox, sandbox.load(WAT / "fetch.wat")


def call(fetch: tuple[Sandbox, LoadedComponent], url: str, *hosts: str) -> Success | str:
    sandbox, component = fetch
    outcome = sandbox.run(component, input=url, grants=Grants(network=hosts))
    if isinstance(outcome, ConnectorFailed):
        assert outcome.failure.kind == "unavailable"
        return outcome.failure.message
    assert isinstance(outcome, Success), outcome
    return outcome


def test_no_grant_no_network(
    fetch: tuple[Sandbox, LoadedComponent], servers: tuple[int, int]
) -> None:
    reason = call(fetch, f"http://127.0.0.1:{servers[0]}/")
    assert isinstance(reason, str) and "no network" in reason


def test_granted_address_is_reached(
    fetch: tuple[Sandbox, LoadedComponent], servers: tuple[int, int]
) -> None:
    port = servers[0]
    for url in (f"http://127.0.0.1:{port}/", f"http://2130706433:{port}/", f"http://127.1:{port}/"):
        outcome = call(fetch, url, f"127.0.0.1:{port}")
        assert isinstance(outcome, Success), (url, outcome)
        assert outcome.output == "200"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "[::1]", "localhost", "0177.0.0.1"],
)
def test_loopback_forms_are_refused_without_a_literal_grant(
    fetch: tuple[Sandbox, LoadedComponent], servers: tuple[int, int], host: str
) -> None:
    port = servers[0]
    # A wildcard and another port's literal grant must both leave loopback closed.
    reason = call(fetch, f"http://{host}:{port}/", "*.example.com", f"127.0.0.1:{servers[1]}")
    assert isinstance(reason, str)
    assert "grant it with --allow-host" in reason


def test_redirect_to_an_ungranted_target_is_refused(
    fetch: tuple[Sandbox, LoadedComponent], servers: tuple[int, int]
) -> None:
    reason = call(fetch, f"http://127.0.0.1:{servers[0]}/redirect", f"127.0.0.1:{servers[0]}")
    assert isinstance(reason, str)
    assert str(servers[1]) in reason


def test_cli_allow_host(servers: tuple[int, int]) -> None:
    url = f'"http://127.0.0.1:{servers[0]}/"'
    refused = run_cli("connector", "run", str(WAT / "fetch.wat"), "--input", url)
    assert refused.code == 1 and refused.json["error"]["kind"] == "unavailable"
    allowed = run_cli(
        "connector",
        "run",
        str(WAT / "fetch.wat"),
        "--input",
        url,
        "--allow-host",
        f"127.0.0.1:{servers[0]}",
    )
    assert allowed.code == 0, allowed.stdout
    assert allowed.json["output"] == 200
    assert allowed.json["stats"]["http_requests"] == 1
