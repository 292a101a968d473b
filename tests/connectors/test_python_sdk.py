"""The Python guest SDK's plain-Python parts, on the host: the failure kinds, the shared
HTTP status -> failure convention, Retry-After, and the JSON-in/JSON-out wrapper."""

from __future__ import annotations

from typing import Any

import pytest

from flowforge.runtime import ERROR_KINDS
from flowforge.sdk.python.flowforge_connector import _entry
from flowforge.sdk.python.flowforge_connector._failure import (
    KINDS,
    Failure,
    failure_for_status,
    retry_after_ms,
    status_kind,
)
from flowforge.sdk.python.flowforge_connector._http import Response


def test_the_kinds_are_the_wits() -> None:
    assert tuple(KINDS) == ERROR_KINDS


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown failure kind"):
        Failure("oops", "x")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None), (204, None), (304, None),
        (400, "invalid-input"), (401, "unauthorized"), (403, "unauthorized"),
        (404, "not-found"), (409, "invalid-input"), (422, "invalid-input"),
        (429, "rate-limited"), (500, "unavailable"), (502, "unavailable"), (503, "unavailable"),
    ],
)  # fmt: skip
def test_status_mapping(status: int, kind: str | None) -> None:
    assert status_kind(status) == kind


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("Retry-After", "7")], 7000),
        ([("retry-after", " 0 ")], 0),
        (
            [
                ("Retry-After", "Wed, 21 Oct 2015 07:28:30 GMT"),
                ("Date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ],
            30000,
        ),
        ([("Retry-After", "Wed, 21 Oct 2015 07:28:30 GMT")], None),  # no Date: no clock
        ([("Retry-After", "soon")], None),
        ([], None),
    ],
)
def test_retry_after(headers: list[tuple[str, str]], expected: int | None) -> None:
    assert retry_after_ms(headers) == expected


def test_429_and_503_carry_retry_after_but_404_does_not() -> None:
    headers = [("Retry-After", "2")]
    limited = failure_for_status(429, headers)
    assert limited is not None and limited.retry_after_ms == 2000
    down = failure_for_status(503, headers)
    assert down is not None and (down.kind, down.retry_after_ms) == ("unavailable", 2000)
    missing = failure_for_status(404, headers)
    assert missing is not None and missing.retry_after_ms is None


def test_raise_for_status_quotes_the_start_of_the_body() -> None:
    response = Response(422, [("content-type", "application/json")], b'{"error":  "bad\\n sku"}')
    with pytest.raises(Failure) as caught:
        response.raise_for_status("create order")
    assert caught.value.kind == "invalid-input"
    assert caught.value.message.startswith("create order: HTTP 422: ")
    assert Response(200, [], b"").raise_for_status().status == 200


def test_response_helpers() -> None:
    headers = [
        ("Content-Type", "application/problem+json"),
        ("Set-Cookie", "a"),
        ("set-cookie", "b"),
    ]
    response = Response(200, headers, b'{"x": 1}')
    assert response.is_json and response.json() == {"x": 1}
    assert response.header("content-type") == "application/problem+json"
    assert response.header_dict()["set-cookie"] == "a, b"
    with pytest.raises(Failure) as caught:
        Response(200, [], b"<html>").json()
    assert caught.value.kind == "unavailable"


def _invoke(fn: Any, config: str = "{}", input: str = "{}") -> str:
    return _entry.invoke(fn, config, input)


def test_invoke_parses_and_serialises() -> None:
    assert _invoke(lambda c, i: {"c": c, "i": i}, '{"a": 1}', "[2]") == '{"c": {"a": 1}, "i": [2]}'


@pytest.mark.parametrize(
    ("config", "input", "kind"),
    [("{oops", "{}", "invalid-config"), ("", "{}", "invalid-config"), ("{}", "", "invalid-input")],
)
def test_unparseable_config_and_input(config: str, input: str, kind: str) -> None:
    with pytest.raises(Failure) as caught:
        _invoke(lambda c, i: None, config, input)
    assert caught.value.kind == kind


def test_other_exceptions_and_unserialisable_results_are_internal() -> None:
    def boom(config: Any, input: Any) -> Any:
        raise KeyError("name")

    with pytest.raises(Failure) as caught:
        _invoke(boom)
    assert (caught.value.kind, caught.value.message) == ("internal", "KeyError: 'name'")
    with pytest.raises(Failure) as caught:
        _invoke(lambda c, i: {1, 2})
    assert caught.value.kind == "internal"
    with pytest.raises(Failure) as caught:
        _invoke(lambda c, i: float("nan"))
    assert caught.value.kind == "internal"
