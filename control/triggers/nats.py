"""NATS triggers: each message on a trigger's subject starts a run with the message's JSON
as input.

Core NATS, in a queue group: a message reaches one of the managers sharing the group, so
two control planes do not start two runs for it. Not a JetStream consumer, because the
subject belongs to the user's system, not to FlowForge: a durable consumer needs a stream
capturing the subject, and creating one would clash with (or silently duplicate) streams
the user already keeps for it and store their traffic for us. The price is at-most-once:
messages published while no manager listens are not seen; a publisher that needs more can
use request-reply (the reply says which runs started) and retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from flowforge.control.workflow.spec import NatsTrigger

from .registry import RegisteredTrigger, StartRun

log = logging.getLogger("flowforge.triggers")

QUEUE_GROUP: Final = "flowforge-triggers"


class NatsTriggerError(Exception):
    pass


class NatsListener:
    """Subscribes to the subjects of the NATS triggers; `set_triggers` swaps them."""

    def __init__(self, url: str, start_run: StartRun, *, queue: str = QUEUE_GROUP) -> None:
        self.url = url
        self.start_run = start_run
        self.queue = queue
        self.dropped = 0  # messages that started nothing (not JSON)
        self._client: Client | None = None
        self._targets: dict[str, list[RegisteredTrigger]] = {}
        self._subscriptions: dict[str, Subscription] = {}

    async def start(self) -> None:
        try:
            self._client = await nats.connect(
                self.url,
                name="flowforge-triggers",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
            )
        except (OSError, nats.errors.Error) as exc:
            raise NatsTriggerError(f"NATS triggers: cannot connect to {self.url}: {exc}") from exc

    async def set_triggers(self, triggers: Iterable[RegisteredTrigger]) -> None:
        """Listen to exactly the subjects of these NATS triggers."""
        targets: dict[str, list[RegisteredTrigger]] = {}
        for trigger in triggers:
            if isinstance(trigger.spec, NatsTrigger):
                targets.setdefault(trigger.spec.subject, []).append(trigger)
        self._targets = targets
        if self._client is None:
            return
        for subject in set(self._subscriptions) - set(targets):
            await self._subscriptions.pop(subject).unsubscribe()
        for subject in set(targets) - set(self._subscriptions):
            self._subscriptions[subject] = await self._subscribe(self._client, subject)
        # Subscriptions are live once the server has them: a message published right after
        # a refresh is then seen.
        await self._client.flush()

    async def _subscribe(self, client: Client, subject: str) -> Subscription:
        async def on_message(msg: Msg) -> None:
            await self._deliver(subject, msg)

        return await client.subscribe(subject, queue=self.queue, cb=on_message)

    async def _deliver(self, subject: str, msg: Msg) -> None:
        try:
            payload: Any = json.loads(msg.data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.dropped += 1
            reason = f"the message is not JSON ({exc}); publish the run's input as JSON"
            log.warning(
                "NATS trigger %s: dropped a message on %s: %s", subject, msg.subject, reason
            )
            await _reply(msg, {"error": reason})
            return
        info = {"type": "nats", "subject": subject, "message_subject": msg.subject}
        started: list[str] = []
        errors: list[str] = []
        for t in self._targets.get(subject, []):
            try:
                started.append(
                    await self.start_run(t.project, t.workflow, t.version, payload, info)
                )
            except Exception as exc:  # the host refused or failed; say so to the sender
                log.error("%s: a message on %s started no run: %s", t.label, msg.subject, exc)
                errors.append(f"{t.project}/{t.workflow}: {exc}")
        reply: dict[str, Any] = {"run_ids": started}
        if errors:
            reply["errors"] = errors
        await _reply(msg, reply)

    async def stop(self) -> None:
        client, self._client = self._client, None
        self._subscriptions.clear()
        if client is not None:
            await client.drain()


async def _reply(msg: Msg, doc: dict[str, Any]) -> None:
    if msg.reply:
        await msg.respond(json.dumps(doc).encode("utf-8"))


__all__ = ["QUEUE_GROUP", "NatsListener", "NatsTriggerError"]
