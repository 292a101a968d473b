"""The bus: tasks to workers, results to the scheduler, dead letters and run events.

Two transports with one interface (`Bus`) and the same delivery semantics: `InProcessBus`
for the embedded mode and `NatsBus` over NATS JetStream. Import `NatsBus` from
`flowforge.runtime.bus.nats`: only the distributed mode needs the NATS client.
"""

from .base import (
    DEFAULT_ACK_WAIT_S,
    DEFAULT_DUPLICATE_WINDOW_S,
    DEFAULT_MAX_DELIVER,
    Bus,
    BusError,
    BusSettings,
    Delivery,
    Subscription,
)
from .memory import InProcessBus
from .messages import (
    DeadLetter,
    MessageError,
    ResultMessage,
    RunEvent,
    TaskMessage,
    TaskOutcome,
    TaskRejected,
    message_id,
)

__all__ = [
    "DEFAULT_ACK_WAIT_S",
    "DEFAULT_DUPLICATE_WINDOW_S",
    "DEFAULT_MAX_DELIVER",
    "Bus",
    "BusError",
    "BusSettings",
    "DeadLetter",
    "Delivery",
    "InProcessBus",
    "MessageError",
    "ResultMessage",
    "RunEvent",
    "Subscription",
    "TaskMessage",
    "TaskOutcome",
    "TaskRejected",
    "message_id",
]
