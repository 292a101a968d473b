"""Cron triggers: each one a task that sleeps until its next tick, claims the tick in the
database, then starts the run.

Policy (see docs/architecture.md, "Triggers"):
- A tick fires at most once, whatever restarts or how many managers share the database:
  the tick is claimed by a compare-and-set on the trigger's `last_tick` before the run is
  requested. A run whose start then fails is logged; the tick still counts as fired.
- After downtime, only the latest missed tick fires (once, with `missed` = how many earlier
  ticks were skipped), not a burst.
- A version's trigger never fires for a tick from before the version was stored (so a new
  trigger, or a changed schedule, starts with the next tick).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from croniter import croniter

from flowforge.control.workflow.spec import CronTrigger

from .clock import Clock
from .registry import RegisteredTrigger, StartRun
from .store import TriggerStore

log = logging.getLogger("flowforge.triggers")

# Counting the skipped ticks of a long outage of a per-second schedule is not worth it.
_MISSED_COUNT_CAP: Final = 1000
_JUST_AFTER: Final = timedelta(microseconds=1)


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression read in its time zone; every time handed out is in UTC."""

    expression: str
    timezone: str = "UTC"

    @classmethod
    def of(cls, trigger: CronTrigger) -> CronSchedule:
        return cls(trigger.schedule, trigger.timezone)

    def _local(self, at: datetime) -> datetime:
        return at.astimezone(ZoneInfo(self.timezone))

    def next_after(self, at: datetime) -> datetime:
        """The first tick strictly after `at`."""
        tick = croniter(self.expression, self._local(at)).get_next(datetime)
        return tick.astimezone(UTC)

    def latest_at_or_before(self, at: datetime) -> datetime:
        """The last tick at or before `at`."""
        tick = croniter(self.expression, self._local(at + _JUST_AFTER)).get_prev(datetime)
        return tick.astimezone(UTC)

    def count_between(self, after: datetime, before: datetime) -> int:
        """How many ticks fall strictly between `after` and `before` (capped)."""
        ticks = croniter(self.expression, self._local(after))
        count = 0
        while count < _MISSED_COUNT_CAP:
            if ticks.get_next(datetime).astimezone(UTC) >= before:
                break
            count += 1
        return count


class CronRunner:
    """Fires one cron trigger for as long as its task runs."""

    def __init__(
        self, trigger: RegisteredTrigger, store: TriggerStore, start_run: StartRun, clock: Clock
    ) -> None:
        if not isinstance(trigger.spec, CronTrigger):
            raise TypeError(f"{trigger.label} is not a cron trigger")
        self.trigger = trigger
        self.spec = trigger.spec
        self.schedule = CronSchedule.of(trigger.spec)
        self.store = store
        self.start_run = start_run
        self.clock = clock
        self.fired: list[str] = []  # the run ids this runner started
        self.firing: set[asyncio.Task[str | None]] = set()

    async def run(self) -> None:
        key = self.trigger.cron_key
        since = self.trigger.version_created_at
        stored = await self.store.baseline(key, self.spec.schedule, self.spec.timezone, since)
        # Ticks from before this version was stored are not its ticks: a schedule changed
        # by a new version does not fire at once for a tick of the old days.
        last = max(stored, since)
        while True:
            now = self.clock.now()
            due = self.schedule.latest_at_or_before(now)
            if due > last:
                # Shielded: a refresh or stop that cancels this task while the tick is
                # being claimed and started must not lose the run after the claim; the
                # manager waits for `firing` before it lets go of the storage.
                firing = asyncio.ensure_future(self.fire(due, last))
                self.firing.add(firing)
                firing.add_done_callback(self.firing.discard)
                await asyncio.shield(firing)
                last = due
            await self.clock.sleep_until(self.schedule.next_after(now))

    async def fire(self, tick: datetime, previous: datetime) -> str | None:
        """Claim `tick` and start its run; None when the tick was claimed already or the
        run could not start (logged)."""
        key = self.trigger.cron_key
        if not await self.store.claim(key, tick, self.spec.schedule, self.spec.timezone):
            log.info("%s: tick %s was fired already", self.trigger.label, tick.isoformat())
            return None
        info: dict[str, Any] = {
            "type": "cron",
            "schedule": self.spec.schedule,
            "timezone": self.spec.timezone,
            "tick": tick.isoformat(),
            "missed": self.schedule.count_between(previous, tick),
        }
        t = self.trigger
        try:
            run_id = await self.start_run(t.project, t.workflow, t.version, self.spec.input, info)
        except Exception as exc:  # the host's refusal or failure; the next tick tries again
            log.error("%s: tick %s: the run did not start: %s", self.trigger.label, tick, exc)
            return None
        await self.store.record_run(key, tick, run_id)
        self.fired.append(run_id)
        log.info("%s: tick %s started run %s", self.trigger.label, tick.isoformat(), run_id)
        return run_id


__all__ = ["CronRunner", "CronSchedule"]
