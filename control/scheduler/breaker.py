"""Circuit breakers, one per connector and target host.

A breaker opens after `threshold` consecutive retryable failures of its key; while open,
steps for that key wait (a retry timer) instead of being dispatched; after `cooldown_s`
it half-opens and lets one probe through: the probe's success closes it, its failure
opens it again for another cooldown. Breakers live in the scheduler's memory (a restart
closes them, which only costs one more probe); their state changes are reported to
`on_change` so `flowforge status` can show them from another process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    threshold: int = 5  # consecutive retryable failures that open a breaker
    cooldown_s: float = 30.0  # how long it stays open before a probe


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A breaker as `flowforge status` shows it."""

    connector: str
    host: str
    state: BreakerState
    failures: int
    opened_at: float | None  # wall-clock Unix seconds
    retry_at: float | None  # when an open breaker lets a probe through

    def to_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "host": self.host,
            "state": self.state.value,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "retry_at": self.retry_at,
        }


class _Breaker:
    __slots__ = ("failures", "opened_at", "probing", "state")

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False


BreakerKey = tuple[str, str]  # (connector name, target host)


def target_host(config: Mapping[str, Any], input: Any, network: tuple[str, ...]) -> str:
    """The host a step calls: the host of a `url` in its input or config, else its
    network grants, else "-" (a connector that calls nothing)."""
    for source in (input, config):
        url = source.get("url") if isinstance(source, Mapping) else None
        if isinstance(url, str):
            host = urlsplit(url).hostname
            if host:
                return host
    return ",".join(network) if network else "-"


class BreakerBoard:
    """All the breakers; `clock` is wall-clock seconds (a parameter for tests)."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[list[BreakerView]], None] | None = None,
    ) -> None:
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self.on_change = on_change
        self._breakers: dict[BreakerKey, _Breaker] = {}

    def admit(self, key: BreakerKey) -> float | None:
        """None when a step for `key` may be dispatched now; else the wall-clock time at
        which to try again. A half-open breaker admits one probe at a time."""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.state is BreakerState.CLOSED:
            return None
        now = self.clock()
        reopen = breaker.opened_at + self.settings.cooldown_s
        if breaker.state is BreakerState.OPEN:
            if now < reopen:
                return reopen
            breaker.state = BreakerState.HALF_OPEN
            breaker.probing = False
            self._changed()
        if breaker.probing:
            # Another step is the probe; look again a little later.
            return now + min(1.0, self.settings.cooldown_s)
        breaker.probing = True
        return None

    def succeeded(self, key: BreakerKey) -> None:
        breaker = self._breakers.get(key)
        if breaker is None:
            return
        changed = breaker.state is not BreakerState.CLOSED
        breaker.state = BreakerState.CLOSED
        breaker.failures = 0
        breaker.probing = False
        if changed:
            self._changed()

    def failed(self, key: BreakerKey) -> None:
        """A retryable failure (rate-limited, unavailable, timeout ...) of `key`."""
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.failures += 1
        if breaker.state is BreakerState.HALF_OPEN or (
            breaker.state is BreakerState.CLOSED and breaker.failures >= self.settings.threshold
        ):
            breaker.state = BreakerState.OPEN
            breaker.opened_at = self.clock()
            breaker.probing = False
            self._changed()

    def released(self, key: BreakerKey) -> None:
        """A probe that ended neither way (a non-retryable failure): let another probe."""
        breaker = self._breakers.get(key)
        if breaker is not None:
            breaker.probing = False

    def views(self) -> list[BreakerView]:
        cooldown = self.settings.cooldown_s
        return [
            BreakerView(
                connector,
                host,
                b.state,
                b.failures,
                b.opened_at if b.state is not BreakerState.CLOSED else None,
                b.opened_at + cooldown if b.state is BreakerState.OPEN else None,
            )
            for (connector, host), b in sorted(self._breakers.items())
        ]

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.views())


__all__ = [
    "BreakerBoard",
    "BreakerKey",
    "BreakerSettings",
    "BreakerState",
    "BreakerView",
    "target_host",
]
