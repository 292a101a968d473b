"""The trigger manager: loads the triggers of every submitted workflow and fires them
(cron in this process's tasks, webhooks on an HTTP listener, NATS subjects on a client).

The host gives it `start_run`, which starts a run as the run API does. The API server
calls `refresh()` after each submit; `refresh_every` also re-reads on a timer, for
workflows submitted by another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from flowforge.control.secrets import SecretStore
from flowforge.control.storage import Storage
from flowforge.control.workflow.spec import CronTrigger, NatsTrigger, WebhookTrigger

from .clock import SYSTEM_CLOCK, Clock
from .cron import CronRunner
from .nats import NatsListener
from .registry import RegisteredTrigger, StartRun, load_triggers
from .store import CronKey, TriggerStore
from .webhook import MAX_BODY_BYTES, WebhookServer

log = logging.getLogger("flowforge.triggers")


@dataclass
class _CronTask:
    runner: CronRunner
    task: asyncio.Task[None]


class TriggerManager:
    """`start()`, `refresh()` after submits, `stop()` (or use it as an async context)."""

    def __init__(
        self,
        storage: Storage,
        start_run: StartRun,
        *,
        nats_url: str | None = None,
        webhook_listen: str | None = None,
        secrets: SecretStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        refresh_every: float | None = 30.0,
        webhook_max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.storage = storage
        self.start_run = start_run
        self.clock = clock
        self.refresh_every = refresh_every
        self.store = TriggerStore(storage.db)
        self.webhooks = (
            WebhookServer(
                webhook_listen,
                start_run,
                self.store,
                clock,
                secrets=secrets,
                max_body=webhook_max_body,
            )
            if webhook_listen is not None
            else None
        )
        self.nats = NatsListener(nats_url, start_run) if nats_url is not None else None
        self.triggers: list[RegisteredTrigger] = []
        self.problems: list[str] = []  # what the last refresh could not serve, and why
        self._cron: dict[CronKey, _CronTask] = {}
        self._refreshing = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._started = False

    @property
    def webhook_address(self) -> str | None:
        """host:port the webhooks are served on (after `start`)."""
        return self.webhooks.address if self.webhooks is not None else None

    async def start(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.start()
        try:
            if self.nats is not None:
                await self.nats.start()
            self._started = True
            await self.refresh()
        except BaseException:
            await self.stop()
            raise
        if self.refresh_every is not None:
            self._refresher = asyncio.create_task(self._refresh_loop(self.refresh_every))

    async def refresh(self) -> list[RegisteredTrigger]:
        """Re-read the workflows (after a submit) and serve their triggers."""
        async with self._refreshing:
            triggers = await load_triggers(self.storage)
            self.triggers = triggers
            problems: list[str] = []
            if self._started:
                self._set_cron(triggers)
                if self.webhooks is not None:
                    problems += self.webhooks.set_routes(triggers)
                if self.nats is not None:
                    await self.nats.set_triggers(triggers)
            problems += self._unserved(triggers)
            for problem in sorted(set(problems) - set(self.problems)):
                log.warning("triggers: %s", problem)
            self.problems = problems
            return triggers

    def _unserved(self, triggers: list[RegisteredTrigger]) -> list[str]:
        problems = []
        for trigger in triggers:
            if isinstance(trigger.spec, WebhookTrigger) and self.webhooks is None:
                problems.append(f"{trigger.label}: not served (no webhook listener configured)")
            if isinstance(trigger.spec, NatsTrigger) and self.nats is None:
                problems.append(f"{trigger.label}: not served (no NATS URL configured)")
        return problems

    def _set_cron(self, triggers: list[RegisteredTrigger]) -> None:
        wanted = {t.cron_key: t for t in triggers if isinstance(t.spec, CronTrigger)}
        for key in list(self._cron):
            current = self._cron[key]
            if wanted.get(key) != current.runner.trigger or current.task.done():
                self._cron.pop(key).task.cancel()
        for key, trigger in wanted.items():
            if key not in self._cron:
                runner = CronRunner(trigger, self.store, self.start_run, self.clock)
                task = asyncio.create_task(self._run_cron(runner), name=f"cron {trigger.label}")
                self._cron[key] = _CronTask(runner, task)

    async def _run_cron(self, runner: CronRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # storage unreachable, say; the next refresh starts it again
            log.exception("%s: the cron trigger stopped", runner.trigger.label)

    async def _refresh_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception:  # keep serving what was loaded; try again next time
                log.exception("triggers: refresh failed")

    def cron_runner(self, key: CronKey) -> CronRunner | None:
        found = self._cron.get(key)
        return found.runner if found is not None else None

    async def stop(self) -> None:
        self._started = False
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        cron, self._cron = list(self._cron.values()), {}
        for entry in cron:
            entry.task.cancel()
        for entry in cron:
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
            # A tick claimed just before the cancel still gets its run.
            if entry.runner.firing:
                await asyncio.gather(*entry.runner.firing, return_exceptions=True)
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.nats is not None:
            await self.nats.stop()

    async def __aenter__(self) -> TriggerManager:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


__all__ = ["TriggerManager"]
