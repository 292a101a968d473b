"""Failures a connector returns, and the shared HTTP status -> failure convention.

Pure Python with no bindings, so the host-side tests can exercise it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    """The failure kind an HTTP status maps to, or None for a status below 400.

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


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip
_DIGITS: Final = frozenset("0123456789")
# Header values may be padded with optional whitespace (RFC 9110 OWS): spaces and tabs only.
_OWS: Final = " \t"


def _number(text: str, low: int, high: int) -> int | None:
    if not text or not set(text) <= _DIGITS:
        return None
    value = int(text)
    return value if low <= value <= high else None


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm),
    # spelled the same way in all four SDKs so that they agree to the second.
    year -= 1 if month <= 2 else 0
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _http_date_seconds(text: str) -> int | None:
    """Seconds since the epoch for an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`), the
    HTTP-date form servers send (RFC 9110 5.6.7); None for anything else."""
    text = text.strip(_OWS)
    if len(text) != 29 or text[3:5] != ", " or text[25:] != " GMT":
        return None
    if text[:3] not in _DAYS or text[7] != " " or text[11] != " " or text[16] != " ":
        return None
    if text[19] != ":" or text[22] != ":" or text[8:11] not in _MONTHS:
        return None
    month = _MONTHS.index(text[8:11]) + 1
    year = _number(text[12:16], 0, 9999)
    hour, minute = _number(text[17:19], 0, 23), _number(text[20:22], 0, 59)
    second = _number(text[23:25], 0, 60)  # 60: a leap second
    if year is None or hour is None or minute is None or second is None:
        return None
    day = _number(text[5:7], 1, _days_in_month(year, month))
    if day is None:
        return None
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second


def retry_after_ms(headers: Iterable[tuple[str, str]]) -> int | None:
    """Milliseconds from the first Retry-After header: delta-seconds, or an HTTP-date.

    The guest has no clock (WASI is stubbed), so an HTTP-date is measured against the
    response's own Date header; without a readable one the date gives no hint. A date at
    or before the response's is 0; anything beyond a u32 is clamped to it.
    """
    pairs = list(headers)
    value = _header(pairs, "retry-after")
    if value is None:
        return None
    value = value.strip(_OWS)
    if value and set(value) <= _DIGITS:
        return min(int(value) * 1000, _MAX_RETRY_AFTER_MS)
    retry_at = _http_date_seconds(value)
    date = _header(pairs, "date")
    sent_at = _http_date_seconds(date) if date is not None else None
    if retry_at is None or sent_at is None:
        return None
    return max(0, min((retry_at - sent_at) * 1000, _MAX_RETRY_AFTER_MS))


# The statuses whose Retry-After the convention reads (RFC 9110 defines it for 503 and,
# with RFC 6585, for 429); on any other status it is ignored.
_RETRY_AFTER_STATUSES: Final = (429, 503)


def failure_for_status(
    status: int, headers: Iterable[tuple[str, str]] = (), message: str | None = None
) -> Failure | None:
    """The Failure an HTTP response with `status` stands for, or None below 400.

    A 429 or 503 carries its Retry-After header as `retry_after_ms`.
    """
    kind = status_kind(status)
    if kind is None:
        return None
    text = message or f"HTTP {status}"
    retry = retry_after_ms(headers) if status in _RETRY_AFTER_STATUSES else None
    return Failure(kind, text, retry_after_ms=retry)
