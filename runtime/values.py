"""Plain Python forms of the values that cross the `flowforge:connector` boundary.

The WIT types in `wit/connector.wit` map one-to-one onto these; the names of
enum cases are the WIT names (kebab-case), so they can be printed as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, get_args

LogLevel = Literal["trace", "debug", "info", "warn", "error"]
LOG_LEVELS: Final[tuple[LogLevel, ...]] = get_args(LogLevel)

ErrorKind = Literal[
    "invalid-input",
    "invalid-config",
    "unauthorized",
    "not-found",
    "rate-limited",
    "unavailable",
    "internal",
]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = get_args(ErrorKind)

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Failure:
    """A connector's own `failure` record: what went wrong, in its words."""

    kind: ErrorKind
    message: str
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The guest's `http-request` record."""

    method: str
    url: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The host's `http-response` record."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
