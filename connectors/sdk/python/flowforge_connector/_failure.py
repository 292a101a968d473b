"""Failures a connector returns, and the shared HTTP status -> failure convention.

Pure Python with no bindings, so the host-side tests can exercise it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Final

KINDS: Final = (
    "invalid-input",
    "invalid-config",
    "unauthorized",
    "not-found",
    "rate-limited",
    "unavailable",
    "internal",
)

# WIT's retry-after-ms is a u32.
_MAX_RETRY_AFTER_MS: Final = 2**32 - 1


class Failure(Exception):
    """Raise this from `handle` to return `err(failure)` with one of the WIT error kinds.

    `retry_after_ms` tells the engine when a retry may succeed (rate limits, outages).
    """

    def __init__(self, kind: str, message: str, *, retry_after_ms: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {', '.join(KINDS)}")
        if retry_after_ms is not None:
            retry_after_ms = max(0, min(int(retry_after_ms), _MAX_RETRY_AFTER_MS))
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_ms = retry_after_ms

    def __repr__(self) -> str:
        return f"Failure({self.kind!r}, {self.message!r}, retry_after_ms={self.retry_after_ms})"

    @classmethod
    def invalid_input(cls, message: str) -> Failure:
        return cls("invalid-input", message)

    @classmethod
    def invalid_config(cls, message: str) -> Failure:
        return cls("invalid-config", message)

    @classmethod
    def unauthorized(cls, message: str) -> Failure:
        return cls("unauthorized", message)

    @classmethod
    def not_found(cls, message: str) -> Failure:
        return cls("not-found", message)

    @classmethod
    def rate_limited(cls, message: str, retry_after_ms: int | None = None) -> Failure:
        return cls("rate-limited", message, retry_after_ms=retry_after_ms)

    @classmethod
    def unavailable(cls, message: str, retry_after_ms: int | None = None) -> Failure:
        return cls("unavailable", message, retry_after_ms=retry_after_ms)

    @classmethod
    def internal(cls, message: str) -> Failure:
        return cls("internal", message)


def status_kind(status: int) -> str | None:
    """The failure kind an HTTP status maps to, or None for a success (1xx-3xx).

    The convention every FlowForge SDK shares, so `connector test` can tell which
    failures are worth retrying: 429 rate-limited, 5xx unavailable, 401/403
    unauthorized, 404 not-found, any other 4xx invalid-input.
    """
    if status < 400:
        return None
    if status == 429:
        return "rate-limited"
    if status >= 500:
        return "unavailable"
    if status in (401, 403):
        return "unauthorized"
    if status == 404:
        return "not-found"
    return "invalid-input"


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def retry_after_ms(headers: Iterable[tuple[str, str]]) -> int | None:
    """Milliseconds from a Retry-After header: delta-seconds, or an HTTP-date.

    The guest has no clock (WASI is stubbed), so an HTTP-date is measured against the
    response's own Date header; without one the date cannot be turned into a delay.
    """
    pairs = list(headers)
    value = _header(pairs, "retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value) * 1000, _MAX_RETRY_AFTER_MS)
    date = _header(pairs, "date")
    if date is None:
        return None
    try:
        delta = parsedate_to_datetime(value) - parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return max(0, min(int(delta.total_seconds() * 1000), _MAX_RETRY_AFTER_MS))


def failure_for_status(
    status: int, headers: Iterable[tuple[str, str]] = (), message: str | None = None
) -> Failure | None:
    """The Failure an HTTP response with `status` stands for, or None when it succeeded.

    A 429 or 503 carries its Retry-After header as `retry_after_ms`.
    """
    kind = status_kind(status)
    if kind is None:
        return None
    text = message or f"HTTP {status}"
    retry = retry_after_ms(headers) if status in (429, 503) else None
    return Failure(kind, text, retry_after_ms=retry)
