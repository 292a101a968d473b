"""Triggers: what starts runs besides a person. Cron schedules, webhooks (optionally
HMAC-signed) and NATS subjects, each declared in a workflow's `triggers`.

    manager = TriggerManager(storage, start_run, webhook_listen="0.0.0.0:8080",
                             nats_url="nats://127.0.0.1:4222", secrets=secret_store)
    await manager.start()      # loads the latest version of every workflow
    await manager.refresh()    # after a submit
    await manager.stop()

`start_run(project, workflow, version, input, trigger) -> run id` is the host's;
`host_start_run(engine)` makes one that starts a run as `RunService.Start` does.
"""

from .clock import SYSTEM_CLOCK, Clock, SystemClock
from .cron import CronRunner, CronSchedule
from .hosting import RunHost, actor_of, host_start_run
from .manager import TriggerManager
from .nats import QUEUE_GROUP, NatsListener, NatsTriggerError
from .registry import (
    DEFAULT_PROJECT,
    RegisteredTrigger,
    StartRun,
    TriggerRefused,
    load_triggers,
)
from .signature import MAX_AGE_S, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from .store import CronKey, CronTick, TriggerStore
from .webhook import MAX_BODY_BYTES, WebhookServer

__all__ = [
    "DEFAULT_PROJECT",
    "MAX_AGE_S",
    "MAX_BODY_BYTES",
    "QUEUE_GROUP",
    "SIGNATURE_HEADER",
    "SYSTEM_CLOCK",
    "TIMESTAMP_HEADER",
    "Clock",
    "CronKey",
    "CronRunner",
    "CronSchedule",
    "CronTick",
    "NatsListener",
    "NatsTriggerError",
    "RegisteredTrigger",
    "RunHost",
    "StartRun",
    "SystemClock",
    "TriggerManager",
    "TriggerRefused",
    "TriggerStore",
    "WebhookServer",
    "actor_of",
    "host_start_run",
    "load_triggers",
    "sign",
]
