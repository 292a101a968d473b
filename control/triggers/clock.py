"""Time as the triggers see it: injectable, so cron can be tested without waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Final, Protocol

# Sleep in short slices and look at the wall clock again: a suspended laptop or a clock
# step would otherwise leave a long sleep late.
_SLICE_S: Final = 30.0


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, zone-aware."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` has reached `when` (at once if it already has)."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(left, _SLICE_S))


SYSTEM_CLOCK: Final = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]
