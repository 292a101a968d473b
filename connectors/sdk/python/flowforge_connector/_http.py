"""`fetch()`: HTTP through the host, which checks every request against the step's grants."""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Mapping
from typing import Any

from . import _host
from ._failure import Failure, failure_for_status

Headers = Mapping[str, str] | Iterable[tuple[str, str]]

_UNSET: Any = object()
# How much of an error body goes into a failure message: enough to explain, not a page.
_ERROR_BODY_CHARS = 300


class Response:
    """An HTTP response: `status`, `headers` (as sent, in order) and `body` (bytes)."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Response(status={self.status}, {len(self.body)} bytes)"

    @property
    def ok(self) -> bool:
        """True for a 2xx status only, as in every FlowForge SDK."""
        return 200 <= self.status < 300

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header called `name` (case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def header_dict(self) -> dict[str, str]:
        """Headers by lowercase name; repeated headers are joined with ', '."""
        merged: dict[str, str] = {}
        for key, value in self.headers:
            name = key.lower()
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        return merged

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self) -> bool:
        kind = self.content_type
        return kind == "application/json" or kind.endswith("+json")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; a Failure (unavailable) when it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError as exc:
            raise Failure(
                "unavailable", f"HTTP {self.status}: the response is not JSON: {exc}"
            ) from None

    def raise_for_status(self, context: str = "") -> Response:
        """Raise the conventional Failure for a 4xx/5xx status; return self otherwise.

        429 -> rate-limited, 5xx -> unavailable, 401/403 -> unauthorized, 404 ->
        not-found, other 4xx -> invalid-input; a 429 or 503 carries its Retry-After
        (delta-seconds, or an HTTP-date measured against the Date header) as retry-after-ms.
        """
        snippet = " ".join(self.text.split())[:_ERROR_BODY_CHARS]
        prefix = f"{context}: " if context else ""
        message = f"{prefix}HTTP {self.status}" + (f": {snippet}" if snippet else "")
        failure = failure_for_status(self.status, self.headers, message)
        if failure is not None:
            raise failure
        return self


def _header_list(headers: Headers | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), str(v)) for k, v in items]


def fetch(
    method: str,
    url: str,
    *,
    headers: Headers | None = None,
    body: bytes | str | None = None,
    json: Any = _UNSET,
    timeout_ms: int | None = None,
) -> Response:
    """Send one HTTP request through the host and return its response (any status).

    `json=` serialises a value and sets Content-Type: application/json. A request the
    host cannot complete (host not granted, refused, timed out) raises a Failure with kind
    `unavailable` and the host's message, so the engine may retry it. Call
    `response.raise_for_status()` to turn 4xx/5xx into the conventional failures.
    """
    pairs = _header_list(headers)
    if json is not _UNSET:
        if body is not None:
            raise ValueError("give fetch() a body or json, not both")
        body = _json.dumps(json, ensure_ascii=False)
        if not any(k.lower() == "content-type" for k, _ in pairs):
            pairs.append(("content-type", "application/json"))
    data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    result = _host.fetch(method.upper(), url, pairs, data, timeout_ms)
    if isinstance(result, str):
        raise Failure("unavailable", f"{method.upper()} {url}: {result}")
    status, response_headers, response_body = result
    return Response(status, response_headers, response_body)
