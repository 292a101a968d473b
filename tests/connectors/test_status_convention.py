"""The HTTP status convention, one table proven through the real sandbox in all four guest
SDKs (Python, JavaScript, Zig, C): `ok` is 2xx only; 429 -> rate-limited, 5xx ->
unavailable, 401/403 -> unauthorized, 404 -> not-found, other 4xx -> invalid-input; a 429
or 503 carries its Retry-After (delta-seconds, or an IMF-fixdate measured against the
response's Date header) as retry-after-ms. docs/connectors.md, "The retry convention"."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowforge.control.build import Language
from flowforge.runtime import ConnectorFailed, LoadedComponent, Sandbox, Success
from tests.connectors.support import BUILD_TIMEOUT_S, call, connector_test, load, output
from tests.local_http import QuietHandler, serving

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Probe:
    """A test guest with the status probe: input {url, check} -> {status, ok}, where
    `check` first applies the SDK's raise-for-status."""

    language: Language
    folder: Path
    config: dict[str, str]


PROBES = {
    "python": Probe("python", HERE / "python_sdk", {}),
    "javascript": Probe("javascript", HERE / "js_sdk", {}),
    "zig": Probe("zig", HERE / "zig_http", {"action": "status"}),
    "c": Probe("c", HERE / "c" / "probe", {"action": "status"}),
}
# The JavaScript guest picks its action from the input rather than the config.
_INPUT_ACTION = {"javascript": {"action": "status"}}

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
LATER = "Wed, 21 Oct 2015 07:28:30 GMT"


class _Service(QuietHandler):
    """Answers /?status=N&h=Name:Value... with that status and exactly those headers: no
    Date header unless the query names one (BaseHTTPRequestHandler would add the clock's)."""

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        status = int(query["status"][0])
        self.send_response_only(status)
        for header in query.get("h", []):
            name, _, value = header.partition(":")
            self.send_header(name, value)
        body = b"" if status in (204, 304) else b"why: a reason"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    with serving(_Service) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module", params=list(PROBES))
def probe(request: pytest.FixtureRequest, sandbox: Sandbox) -> tuple[Probe, LoadedComponent]:
    found = PROBES[request.param]
    return found, load(sandbox, found.folder, found.language)


def _run(
    sandbox: Sandbox,
    probe: tuple[Probe, LoadedComponent],
    service: str,
    status: int,
    headers: list[tuple[str, str]],
    *,
    check: bool,
) -> Success | ConnectorFailed:
    found, component = probe
    query = urllib.parse.urlencode(
        [("status", str(status)), *((("h", f"{name}:{value}") for name, value in headers))]
    )
    input = {
        **_INPUT_ACTION.get(found.language, {}),
        "url": f"http://{service}/?{query}",
        "check": check,
    }
    outcome = call(sandbox, component, found.config, input, network=(service,))
    assert isinstance(outcome, Success | ConnectorFailed), outcome
    return outcome


# -- ok is 2xx only; raise-for-status passes every status below 400 -------------------------


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (201, True), (204, True), (299, True), (300, False), (304, False),
     (399, False), (404, False), (429, False), (503, False)],
)  # fmt: skip
def test_ok_means_2xx(
    sandbox: Sandbox,
    probe: tuple[Probe, LoadedComponent],
    service: str,
    status: int,
    ok: bool,
) -> None:
    assert output(_run(sandbox, probe, service, status, [], check=False)) == {
        "status": status,
        "ok": ok,
    }


@pytest.mark.parametrize("status", [200, 204, 300, 304, 399])
def test_below_400_is_not_a_failure(
    sandbox: Sandbox, probe: tuple[Probe, LoadedComponent], service: str, status: int
) -> None:
    assert output(_run(sandbox, probe, service, status, [], check=True))["status"] == status


# -- the kinds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid-input"), (401, "unauthorized"), (403, "unauthorized"), (404, "not-found"),
     (405, "invalid-input"), (409, "invalid-input"), (410, "invalid-input"),
     (422, "invalid-input"), (428, "invalid-input"), (429, "rate-limited"),
     (430, "invalid-input"), (499, "invalid-input"), (500, "unavailable"),
     (502, "unavailable"), (503, "unavailable"), (504, "unavailable"), (599, "unavailable")],
)  # fmt: skip
def test_status_kinds(
    sandbox: Sandbox,
    probe: tuple[Probe, LoadedComponent],
    service: str,
    status: int,
    kind: str,
) -> None:
    outcome = _run(sandbox, probe, service, status, [], check=True)
    assert isinstance(outcome, ConnectorFailed), outcome
    assert (outcome.failure.kind, outcome.failure.retry_after_ms) == (kind, None)
    assert str(status) in outcome.failure.message


# -- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("Retry-After", "2")], 2000),
        ([("Retry-After", "0")], 0),
        ([("Retry-After", " \t7 ")], 7000),  # optional whitespace around the value
        ([("Retry-After", "120"), ("Retry-After", "5")], 120_000),  # the first one counts
        ([("Retry-After", "4294967")], 4_294_967_000),
        ([("Retry-After", "4294968")], 4_294_967_295),  # clamped to the WIT u32
        ([("Retry-After", "9" * 40)], 4_294_967_295),
        ([("Retry-After", LATER), ("Date", DATE)], 30_000),
        ([("Date", DATE), ("Retry-After", "Thu, 22 Oct 2015 07:28:00 GMT")], 86_400_000),
        ([("Retry-After", "Thu, 01 Jan 2015 00:00:00 GMT"), ("Date", DATE)], 0),  # past: now
        (
            [
                ("Retry-After", "Sun, 01 Mar 2015 00:00:00 GMT"),
                ("Date", "Sat, 28 Feb 2015 23:59:59 GMT"),
            ],
            1000,
        ),
        (
            [
                ("Retry-After", "Tue, 01 Mar 2016 00:00:00 GMT"),
                ("Date", "Mon, 29 Feb 2016 00:00:00 GMT"),
            ],
            86_400_000,
        ),
        ([("Retry-After", "Mon, 01 Jan 2120 00:00:00 GMT"), ("Date", DATE)], 4_294_967_295),
        ([("Retry-After", LATER)], None),  # no Date header: a date cannot become a delay
        ([("Retry-After", LATER), ("Date", "yesterday")], None),
        ([("Retry-After", LATER), ("Date", "Wed, 21 Oct 2015 07:28:00 +0000")], None),
        ([("Retry-After", "Wednesday, 21-Oct-15 07:28:30 GMT"), ("Date", DATE)], None),
        ([("Retry-After", "Wed Oct 21 07:28:30 2015"), ("Date", DATE)], None),
        ([("Retry-After", "Wed, 31 Feb 2015 07:28:30 GMT"), ("Date", DATE)], None),
        ([("Retry-After", "wed, 21 oct 2015 07:28:30 gmt"), ("Date", DATE)], None),
        ([("Retry-After", "1.5")], None),
        ([("Retry-After", "-1")], None),
        ([("Retry-After", "+3")], None),
        ([("Retry-After", "1_000")], None),
        ([("Retry-After", "soon")], None),
        ([("Retry-After", "")], None),
        ([], None),
    ],
)
def test_retry_after_on_429_and_503(
    sandbox: Sandbox,
    probe: tuple[Probe, LoadedComponent],
    service: str,
    status: int,
    headers: list[tuple[str, str]],
    expected: int | None,
) -> None:
    outcome = _run(sandbox, probe, service, status, headers, check=True)
    assert isinstance(outcome, ConnectorFailed), outcome
    kind = "rate-limited" if status == 429 else "unavailable"
    assert (outcome.failure.kind, outcome.failure.retry_after_ms) == (kind, expected)


@pytest.mark.parametrize("status", [500, 502, 504, 404, 400])
def test_retry_after_is_ignored_on_other_statuses(
    sandbox: Sandbox, probe: tuple[Probe, LoadedComponent], service: str, status: int
) -> None:
    headers = [("Retry-After", "7")]
    outcome = _run(sandbox, probe, service, status, headers, check=True)
    assert isinstance(outcome, ConnectorFailed), outcome
    assert outcome.failure.retry_after_ms is None


# -- transport errors, and the harness's injected faults --------------------------------------


def test_a_transport_error_is_unavailable(
    sandbox: Sandbox, probe: tuple[Probe, LoadedComponent]
) -> None:
    found, component = probe
    input = {**_INPUT_ACTION.get(found.language, {}), "url": "http://127.0.0.1:9/", "check": True}
    outcome = call(sandbox, component, found.config, input, network=("127.0.0.1:9",))
    assert isinstance(outcome, ConnectorFailed), outcome
    assert (outcome.failure.kind, outcome.failure.retry_after_ms) == ("unavailable", None)


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("language", list(PROBES))
def test_injected_faults_are_reported_the_same_way(language: str) -> None:
    # `connector test --fault`: http-429 answers with Retry-After: 2, http-503 without one.
    result = connector_test(
        PROBES[language].folder, "--fault", "http-429", "--fault", "http-503",
        "--fault", "reset",
    )  # fmt: skip
    faults = [f for example in result.json["examples"] for f in example.get("faults", [])]
    assert faults
    seen = {(f["fault"], f["outcome"], f["kind"], f["retry_after_ms"]) for f in faults}
    assert seen == {
        ("http-429", "failure", "rate-limited", 2000),
        ("http-503", "failure", "unavailable", None),
        ("reset", "failure", "unavailable", None),
    }
