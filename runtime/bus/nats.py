"""The distributed bus: NATS JetStream.

Streams (names and subjects start with a configurable prefix, `ff` by default):

| stream             | subjects               | retention  | read by                        |
| ------------------ | ---------------------- | ---------- | ------------------------------ |
| `<prefix>-tasks`   | `<prefix>.tasks.<pool>` | work queue | durable pull consumer per pool |
| `<prefix>-results` | `<prefix>.results`      | work queue | durable pull consumer          |
| `<prefix>-dead`    | `<prefix>.dead.<pool>`  | work queue | durable pull consumer          |
| `<prefix>-events`  | `<prefix>.events.<run>` | limits     | ordered consumers (replay)     |

Streams and consumers are created idempotently (an existing one is updated to the
configured settings). `Nats-Msg-Id` is the message id, so a republished task or result
within the duplicate window is dropped by the server; `traceparent` travels as a header.

Losing the server: the client reconnects for ever. A publish that fails for a reason that
passes (no reply in time, no JetStream responder while the server restarts) is sent again
with the same message id until `publish_patience` seconds have gone, so the server keeps
one copy; only then is it a BusError. A pull whose consumer the server no longer knows
(its store was lost) re-creates the stream and the consumer and goes on.

Dead letters: the task consumer lets the server deliver one more time than `max_deliver`;
a subscriber that receives that extra delivery publishes a `DeadLetter` saying why and
terminates the message (so the reason is ours, not a bare server advisory nobody may be
listening to). A task whose payload cannot be decoded is dead-lettered the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from .base import BusError, BusSettings, Delivery, M, Subscription
from .messages import (
    DeadLetter,
    MessageError,
    ResultMessage,
    RunEvent,
    TaskMessage,
    check_token,
)

MSG_ID_HEADER = "Nats-Msg-Id"
TRACE_HEADER = "traceparent"
DEFAULT_PREFIX = "ff"
DEFAULT_EVENTS_MAX_AGE_S = 7 * 24 * 3600.0
_STREAM_CONFIG_CONFLICT = 10058  # "stream name already in use with a different configuration"
_POLL_S = 5.0  # longest single pull request when waiting without a timeout
DEFAULT_PUBLISH_PATIENCE_S = 30.0
_PUBLISH_TIMEOUT_S = 2.0  # one attempt's wait for the server's acknowledgement
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0
_CONSUMER_NOT_FOUND = 10014
# Failures that pass once the server is back: the publish is sent again (same id).
_TRANSIENT_PUBLISH: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

Decoder = Callable[[bytes], M]
OnTerm = Callable[[Msg, int, str], Awaitable[None]]
Recreate = Callable[[], Awaitable[None]]


def _consumer_lost(exc: nats.errors.Error) -> bool:
    """Whether a fetch failed because the server may no longer have the stream or
    consumer: a pull on a consumer the server does not know is answered "no responders"
    (503), as it is while JetStream is still starting, so both lead to a re-creation
    (harmless when the consumer is there)."""
    return isinstance(
        exc, nats.js.errors.NotFoundError | nats.js.errors.ServiceUnavailableError
    ) or (isinstance(exc, nats.js.errors.APIError) and exc.err_code == _CONSUMER_NOT_FOUND)


def _headers(msg_id: str, traceparent: str | None) -> dict[str, str]:
    headers = {MSG_ID_HEADER: msg_id}
    if traceparent:
        headers[TRACE_HEADER] = traceparent
    return headers


def _msg_id(msg: Msg) -> str:
    return (msg.headers or {}).get(MSG_ID_HEADER, "")


class _NatsDelivery(Generic[M]):
    __slots__ = ("_deliveries", "_message", "_msg", "_on_term")

    def __init__(self, msg: Msg, message: M, deliveries: int, on_term: OnTerm | None) -> None:
        self._msg = msg
        self._message = message
        self._deliveries = deliveries
        self._on_term = on_term

    @property
    def message(self) -> M:
        return self._message

    @property
    def deliveries(self) -> int:
        return self._deliveries

    @property
    def traceparent(self) -> str | None:
        return (self._msg.headers or {}).get(TRACE_HEADER)

    async def ack(self) -> None:
        await _settle(self._msg.ack())

    async def nak(self, delay: float | None = None) -> None:
        await _settle(self._msg.nak(delay))

    async def in_progress(self) -> None:
        await _settle(self._msg.in_progress())

    async def term(self, reason: str) -> None:
        if self._on_term is not None:
            await self._on_term(
                self._msg, self._deliveries, f"terminated by its consumer: {reason}"
            )
        await _settle(self._msg.term())


async def _settle(call: Awaitable[None]) -> None:
    try:
        await call
    except nats.errors.Error as exc:
        raise BusError(f"could not settle a delivery: {exc}") from exc


class _NatsSubscription(Subscription[M]):
    """A pull subscription on a durable consumer; one fetch per `next()`."""

    def __init__(
        self,
        pull: JetStreamContext.PullSubscription,
        decode: Decoder[M],
        *,
        limit: int | None = None,
        on_term: OnTerm | None = None,
        describe_limit: str = "",
        recreate: Recreate | None = None,
        reconnects: Callable[[], int] = lambda: 0,
    ) -> None:
        self._pull = pull
        self._decode = decode
        self._limit = limit
        self._on_term = on_term
        self._describe_limit = describe_limit
        self._recreate = recreate
        self._reconnects = reconnects
        self._checked_at = reconnects()
        self._closed = False

    async def next(self, timeout: float | None = None) -> Delivery[M] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            wait = _POLL_S if deadline is None else deadline - time.monotonic()
            if wait <= 0.001:
                return None
            try:
                msgs = await self._pull.fetch(1, timeout=wait)
            except nats.errors.TimeoutError:
                # A pull on a consumer the server does not have just times out: after a
                # reconnect (a restarted server may have lost its store), make sure once.
                if self._recreate is not None and self._reconnects() != self._checked_at:
                    await self._recreate()
                    self._checked_at = self._reconnects()
                continue
            except nats.errors.Error as exc:
                if self._recreate is not None and _consumer_lost(exc):
                    await self._recreate()
                    continue
                raise BusError(f"could not fetch from the bus: {exc}") from exc
            delivery = await self._accept(msgs[0])
            if delivery is not None:
                return delivery
        return None

    async def _accept(self, msg: Msg) -> Delivery[M] | None:
        deliveries = msg.metadata.num_delivered
        if self._limit is not None and deliveries > self._limit:
            await self._dead(msg, self._limit, self._describe_limit)
            return None
        try:
            message = self._decode(msg.data)
        except MessageError as exc:
            await self._dead(msg, deliveries, f"its payload could not be decoded: {exc}")
            return None
        return _NatsDelivery(msg, message, deliveries, self._on_term)

    async def _dead(self, msg: Msg, deliveries: int, reason: str) -> None:
        if self._on_term is not None:
            await self._on_term(msg, deliveries, reason)
        await _settle(msg.term())

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            # A connection already gone has nothing left to unsubscribe.
            with contextlib.suppress(nats.errors.Error):
                await self._pull.unsubscribe()


class NatsBus:
    """The bus over NATS JetStream; build it with `await NatsBus.connect(url, ...)`."""

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        settings: BusSettings | None = None,
        events_max_age: float = DEFAULT_EVENTS_MAX_AGE_S,
        owns_client: bool = False,
        publish_patience: float = DEFAULT_PUBLISH_PATIENCE_S,
    ) -> None:
        self.prefix = check_token("bus prefix", prefix)
        self._settings = settings or BusSettings()
        self._events_max_age = events_max_age
        self.publish_patience = publish_patience
        self._nc = client
        self._js = client.jetstream()
        self._owns_client = owns_client
        self._subscriptions: list[_NatsSubscription[Any]] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        settings: BusSettings | None = None,
        events_max_age: float = DEFAULT_EVENTS_MAX_AGE_S,
        name: str = "flowforge",
        publish_patience: float = DEFAULT_PUBLISH_PATIENCE_S,
    ) -> NatsBus:
        """Connect (reconnecting for ever after a loss) and create the streams."""
        try:
            client = await nats.connect(
                url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5
            )
        except (OSError, nats.errors.Error) as exc:
            raise BusError(f"could not connect to NATS at {url}: {exc}") from exc
        bus = cls(
            client,
            prefix=prefix,
            settings=settings,
            events_max_age=events_max_age,
            owns_client=True,
            publish_patience=publish_patience,
        )
        try:
            await bus.ensure_streams()
        except BaseException:
            await client.close()
            raise
        return bus

    @property
    def settings(self) -> BusSettings:
        return self._settings

    # -- names -------------------------------------------------------------------------

    def stream_name(self, kind: str) -> str:
        return f"{self.prefix}-{kind}"

    def task_subject(self, pool: str) -> str:
        return f"{self.prefix}.tasks.{pool}"

    @property
    def result_subject(self) -> str:
        return f"{self.prefix}.results"

    def dead_subject(self, pool: str) -> str:
        return f"{self.prefix}.dead.{pool}"

    def event_subject(self, run_id: str) -> str:
        return f"{self.prefix}.events.{run_id}"

    # -- set-up ------------------------------------------------------------------------

    async def ensure_streams(self) -> None:
        """Create the four streams, or bring existing ones to these settings."""
        window = self._settings.duplicate_window
        work = api.RetentionPolicy.WORK_QUEUE
        p = self.prefix
        await self._ensure_stream("tasks", [f"{p}.tasks.*"], work, window)
        await self._ensure_stream("results", [f"{p}.results"], work, window)
        await self._ensure_stream("dead", [f"{p}.dead.*"], work, window)
        await self._ensure_stream(
            "events",
            [f"{p}.events.*"],
            api.RetentionPolicy.LIMITS,
            window,
            max_age=self._events_max_age,
        )

    async def _ensure_stream(
        self,
        kind: str,
        subjects: list[str],
        retention: api.RetentionPolicy,
        window: float,
        max_age: float | None = None,
    ) -> None:
        config = api.StreamConfig(
            name=self.stream_name(kind),
            subjects=subjects,
            retention=retention,
            storage=api.StorageType.FILE,
            duplicate_window=window,
            max_age=max_age,
        )
        try:
            try:
                await self._js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_CONFIG_CONFLICT:
                    raise
                await self._js.update_stream(config)
        except nats.errors.Error as exc:
            raise BusError(f"could not create stream {config.name}: {exc}") from exc

    def _consumer_config(
        self, durable: str, subject: str, ack_wait: float, max_deliver: int
    ) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
        )

    async def _pull(
        self, kind: str, durable: str, subject: str, ack_wait: float, max_deliver: int
    ) -> tuple[JetStreamContext.PullSubscription, Recreate]:
        """A pull subscription bound to the durable consumer (created, or updated to these
        settings), and how to create the stream and consumer again if the server loses them."""
        stream = self.stream_name(kind)
        config = self._consumer_config(durable, subject, ack_wait, max_deliver)
        try:
            # Create, or update an existing durable to the configured ack wait and limit.
            await self._js.add_consumer(stream, config)
            pull = await self._js.pull_subscribe_bind(durable=durable, stream=stream)
        except nats.errors.Error as exc:
            raise BusError(f"could not create consumer {durable} on {stream}: {exc}") from exc

        async def recreate() -> None:
            try:
                await self.ensure_streams()
                await self._js.add_consumer(stream, config)
            except (BusError, nats.errors.Error) as exc:
                raise BusError(f"could not re-create consumer {durable}: {exc}") from exc

        return pull, recreate

    async def delete_streams(self) -> None:
        """Remove this prefix's streams and everything in them (tests and benchmarks)."""
        for kind in ("tasks", "results", "dead", "events"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_stream(self.stream_name(kind))

    # -- publishing --------------------------------------------------------------------

    async def _publish(
        self, subject: str, payload: bytes, msg_id: str, traceparent: str | None
    ) -> bool:
        headers = _headers(msg_id, traceparent)
        give_up = time.monotonic() + self.publish_patience
        pause = _RETRY_FIRST_S
        while True:
            try:
                ack = await self._js.publish(
                    subject, payload, timeout=_PUBLISH_TIMEOUT_S, headers=headers
                )
                return not ack.duplicate
            except _TRANSIENT_PUBLISH as exc:
                if self._nc.is_closed or time.monotonic() + pause > give_up:
                    raise BusError(
                        f"could not publish {msg_id} to {subject} within "
                        f"{self.publish_patience:g} s: {exc!r}"
                    ) from exc
                if isinstance(exc, nats.js.errors.NoStreamResponseError):
                    # No stream takes the subject: the server lost its store, or is
                    # still loading it (then creating is refused or a no-op).
                    with contextlib.suppress(BusError):
                        await self.ensure_streams()
            except nats.errors.Error as exc:
                raise BusError(f"could not publish {msg_id} to {subject}: {exc!r}") from exc
            # Same message id on every attempt: the server keeps one copy.
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX_S)

    async def publish_task(self, task: TaskMessage) -> bool:
        return await self._publish(
            self.task_subject(task.pool), task.encode(), task.msg_id, task.traceparent
        )

    async def publish_result(self, result: ResultMessage) -> bool:
        return await self._publish(
            self.result_subject, result.encode(), result.msg_id, result.traceparent
        )

    async def publish_event(self, event: RunEvent) -> bool:
        return await self._publish(
            self.event_subject(event.run_id), event.encode(), event.msg_id, None
        )

    async def _dead_letter(self, pool: str, msg: Msg, deliveries: int, reason: str) -> None:
        try:
            task: TaskMessage | None = TaskMessage.decode(msg.data)
        except MessageError:
            task = None
        msg_id = task.msg_id if task is not None else _msg_id(msg) or f"unknown/{pool}/0"
        letter = DeadLetter(pool, msg_id, reason, deliveries, time.time(), task)
        await self._publish(self.dead_subject(pool), letter.encode(), msg_id, None)

    # -- subscribing -------------------------------------------------------------------

    async def tasks(self, pool: str) -> Subscription[TaskMessage]:
        check_token("pool", pool)
        limit = self._settings.max_deliver
        # One delivery more than the limit: that one is only used to notice the limit and
        # dead-letter the task with its reason.
        pull, recreate = await self._pull(
            "tasks", f"tasks-{pool}", self.task_subject(pool), self._settings.ack_wait, limit + 1
        )

        async def on_term(msg: Msg, deliveries: int, reason: str) -> None:
            await self._dead_letter(pool, msg, deliveries, reason)

        describe = (
            f"delivered {limit} times (the limit) without being acknowledged; each time it "
            f"was negatively acknowledged or not acknowledged within "
            f"{self._settings.ack_wait:g} s"
        )
        return self._track(
            _NatsSubscription(
                pull,
                TaskMessage.decode,
                limit=limit,
                on_term=on_term,
                describe_limit=describe,
                recreate=recreate,
                reconnects=self._reconnect_count,
            )
        )

    async def results(self) -> Subscription[ResultMessage]:
        pull, recreate = await self._pull(
            "results", "results", self.result_subject, self._settings.ack_wait, -1
        )
        return self._track(
            _NatsSubscription(
                pull, ResultMessage.decode, recreate=recreate, reconnects=self._reconnect_count
            )
        )

    async def dead_letters(self) -> Subscription[DeadLetter]:
        pull, recreate = await self._pull(
            "dead", "dead", f"{self.prefix}.dead.*", self._settings.ack_wait, -1
        )
        return self._track(
            _NatsSubscription(
                pull, DeadLetter.decode, recreate=recreate, reconnects=self._reconnect_count
            )
        )

    def _reconnect_count(self) -> int:
        return int(self._nc.stats["reconnects"])

    def _track(self, subscription: _NatsSubscription[M]) -> _NatsSubscription[M]:
        self._subscriptions.append(subscription)
        return subscription

    async def events(
        self, run_id: str, from_seq: int = 1, *, follow: bool = True
    ) -> AsyncIterator[RunEvent]:
        check_token("run id", run_id)
        subject = self.event_subject(run_id)
        stream = self.stream_name("events")
        last_stream_seq = 0
        if not follow:
            try:
                last = await self._js.get_last_msg(stream, subject)
            except nats.js.errors.NotFoundError:
                return
            last_stream_seq = last.seq or 0
        sub = await self._js.subscribe(
            subject,
            stream=stream,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        try:
            newest = from_seq - 1
            while True:
                try:
                    msg = await sub.next_msg(timeout=_POLL_S)
                except nats.errors.TimeoutError:
                    continue
                event = RunEvent.decode(msg.data)
                # A republish after the duplicate window may repeat a seq: keep the first.
                if event.seq > newest:
                    newest = event.seq
                    yield event
                if not follow and msg.metadata.sequence.stream >= last_stream_seq:
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):  # the connection may be gone
                await sub.unsubscribe()

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.close()
        self._subscriptions.clear()
        if self._owns_client and not self._nc.is_closed:
            await self._nc.close()

    async def wait_idle(self) -> None:
        """Let in-flight acks reach the server (acks are sent without waiting for a reply)."""
        await self._nc.flush()
