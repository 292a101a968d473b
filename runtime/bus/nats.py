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
(its store was lost: the pull goes unanswered; or the consumer was deleted) re-creates the
stream and the consumer and goes on.

Pulls: a subscription sends the consumer's pull requests itself and asks for as many
messages as its taker has room for (a worker: its free slots), so a burst arrives on one
request and nothing waits in a process that cannot start it (see `_NatsSubscription`).

Dead letters: the task consumer lets the server deliver one more time than `max_deliver`;
a subscriber that receives that extra delivery publishes a `DeadLetter` saying why and
terminates the message (so the reason is ours, not a bare server advisory nobody may be
listening to). A task whose payload cannot be decoded is dead-lettered the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.js import api

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
_REQUEST_GRACE_S = 0.5  # how late a pull request's end may be heard before it counts as lost
_STATUS = "Status"  # the header of a status message (no payload) about a pull request
_HEARTBEAT = "100"
_REQUEST_ENDED = frozenset({"404", "408"})  # nothing (more) to send; expired
# Results and dead letters are handed on by their one reader as they come (the scheduler
# queues each for its run), so a pull request may ask for this many at once.
_HANDED_ON_PREFETCH = 64
# ... and settled within milliseconds (acked once the run's append is stored), so they are
# redelivered sooner than tasks: a control plane killed while holding some, the next gets
# them within seconds. A late ack only costs a redelivery, which is applied once.
_HANDED_ON_ACK_WAIT_S = 5.0
DEFAULT_PUBLISH_PATIENCE_S = 30.0
_PUBLISH_TIMEOUT_S = 2.0  # one attempt's wait for the server's acknowledgement
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0
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
    """A pull subscription on a durable consumer, speaking the consumer's pull API itself.

    nats-py's `fetch` costs a pull request (a round trip) and two asyncio tasks per
    message; here one inbox subscription (a callback) takes whatever the server sends, and
    a pull request asks for as many messages as the caller has room for. A request stays
    open until it has brought that many or it expires, so the messages that follow arrive
    without another request. Each request has a reply subject of its own, on which the
    server says how it ended, so a late end of an old one (after a reconnect, or once it
    counted as lost) is told apart from the current one.

    What a request brings is held here until `next()` hands it out. `room` bounds it: a
    worker gives its free slots, so it never holds a task it cannot start at once; the
    scheduler's results and dead letters are handed on as they come, so they may be asked
    for several at a time (`prefetch`). `close()` stops the inbox, takes what was already
    on its way, and negatively acknowledges everything held but not handed out, so it goes
    to another taker at once instead of after the ack wait.
    """

    def __init__(
        self,
        client: Client,
        stream: str,
        consumer: str,
        decode: Decoder[M],
        *,
        prefetch: int = 1,
        limit: int | None = None,
        on_term: OnTerm | None = None,
        describe_limit: str = "",
        recreate: Recreate | None = None,
        reconnects: Callable[[], int] = lambda: 0,
    ) -> None:
        self._nc = client
        self._next_subject = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._decode = decode
        self._prefetch = prefetch
        self._limit = limit
        self._on_term = on_term
        self._describe_limit = describe_limit
        self._recreate = recreate
        self._reconnects = reconnects
        self._checked_at = reconnects()
        self._inbox = client.new_inbox()
        self._sub: NatsSub | None = None
        self._held: deque[Msg] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # The open pull request: its reply subject, how many messages it may still bring
        # (0: none open), when it expires, and the connection (reconnect count) it went on.
        self._requests = 0
        self._reply = ""
        self._credit = 0
        self._expires_at = 0.0
        self._sent_on = 0
        self._failure: tuple[str, str] | None = None  # (status, description) that ended it
        self._closed = False

    async def start(self) -> None:
        try:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._received)
        except nats.errors.Error as exc:
            raise BusError(f"could not subscribe to the bus: {exc}") from exc

    async def _received(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(_STATUS)
        if status is None:
            # A message keeps its own subject, so it is counted against the open request
            # (one that counted as lost may still bring one: then it is held all the same).
            self._held.append(msg)
            if self._credit > 0:
                self._credit -= 1
        elif msg.subject == self._reply and status != _HEARTBEAT:
            # Any other status ends the request: 408 (expired) and 404 (nothing to send)
            # are the ordinary ends, the rest say what went wrong.
            self._credit = 0
            if status not in _REQUEST_ENDED:
                # nats-py keys the description by its header enum; plain text as a fallback.
                description = headers.get(api.Header.DESCRIPTION) or headers.get("Description")
                self._failure = (status, description or "")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    async def _wait(self, seconds: float) -> None:
        """Until a message or a status arrives, or `seconds` pass (not at all when one
        arrived while the caller was sending its request)."""
        if self._held or self._credit == 0 or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(max(seconds, 0.0), _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def next(
        self, timeout: float | None = None, *, room: int | None = None
    ) -> Delivery[M] | None:
        room = max(1, self._prefetch if room is None else room)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if self._held:
                delivery = await self._accept(self._held.popleft())
                if delivery is not None:
                    return delivery
                continue
            await self._check_request()
            now = time.monotonic()
            wait = _POLL_S if deadline is None else deadline - now
            if wait <= 0.001:
                return None
            if self._credit == 0:
                await self._request(room, min(wait, _POLL_S))
            # A request's end is normally heard (a 408 status) when it expires; waking a
            # little after that notices one that never comes.
            await self._wait(min(wait, self._expires_at + _REQUEST_GRACE_S - now))
        return None

    async def _request(self, batch: int, expires: float) -> None:
        self._requests += 1
        self._reply = f"{self._inbox}.{self._requests}"
        self._credit = batch
        self._expires_at = time.monotonic() + expires
        self._sent_on = self._reconnects()
        body = json.dumps({"batch": batch, "expires": int(expires * 1e9)}).encode()
        try:
            await self._nc.publish(self._next_subject, body, reply=self._reply)
        except nats.errors.Error as exc:
            self._credit = 0
            raise BusError(f"could not fetch from the bus: {exc}") from exc

    async def _check_request(self) -> None:
        """Deal with how the last request ended, or with one that will not end."""
        if self._failure is not None:
            status, description = self._failure
            self._failure = None
            if self._recreate is not None and _consumer_gone(status, description):
                await self._recreate()
                return
            raise BusError(f"could not fetch from the bus: {status} {description}")
        if self._credit == 0:
            return
        lost = time.monotonic() > self._expires_at + _REQUEST_GRACE_S
        if self._sent_on != self._reconnects() or lost:
            # Sent on a connection since lost, or expired unheard: a pull on a consumer
            # the server does not have is not answered at all. After a reconnect (a
            # restarted server may have lost its store) or such silence, make sure once.
            self._credit = 0
            if self._recreate is not None and (lost or self._reconnects() != self._checked_at):
                self._checked_at = self._reconnects()
                await self._recreate()

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
        if self._closed:
            return
        self._closed = True
        self._wake()
        if self._sub is not None:
            # Draining withdraws the inbox (the server drops the open request with it)
            # and still takes what the server sent before it heard so; only then is
            # everything held known. Without a connection there is nothing on its way.
            with contextlib.suppress(nats.errors.Error):
                if self._nc.is_connected:
                    await self._sub.drain()  # type: ignore[no-untyped-call]  # untyped in nats-py
                else:
                    await self._sub.unsubscribe()
        held, self._held = self._held, deque()
        for msg in held:
            with contextlib.suppress(nats.errors.Error):
                await msg.nak()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _consumer_gone(status: str, description: str) -> bool:
    """Whether a pull ended because the server no longer has the consumer (or JetStream
    is not up yet): then the stream and consumer are created again."""
    return status == "503" or (status == "409" and "consumer deleted" in description.lower())


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

    async def _subscribe(
        self,
        kind: str,
        durable: str,
        subject: str,
        max_deliver: int,
        decode: Decoder[M],
        ack_wait: float | None = None,
        **options: Any,
    ) -> _NatsSubscription[M]:
        """A pull subscription on the durable consumer (created, or updated to these
        settings; `ack_wait` defaults to the bus's) that creates the stream and consumer
        again if the server loses them."""
        stream = self.stream_name(kind)
        wait = self._settings.ack_wait if ack_wait is None else ack_wait
        config = self._consumer_config(durable, subject, wait, max_deliver)
        try:
            # Create, or update an existing durable to the configured ack wait and limit.
            await self._js.add_consumer(stream, config)
        except nats.errors.Error as exc:
            raise BusError(f"could not create consumer {durable} on {stream}: {exc}") from exc

        async def recreate() -> None:
            try:
                await self.ensure_streams()
                await self._js.add_consumer(stream, config)
            except (BusError, nats.errors.Error) as exc:
                raise BusError(f"could not re-create consumer {durable}: {exc}") from exc

        subscription = _NatsSubscription(
            self._nc,
            stream,
            durable,
            decode,
            recreate=recreate,
            reconnects=self._reconnect_count,
            **options,
        )
        await subscription.start()
        self._subscriptions.append(subscription)
        return subscription

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

        async def on_term(msg: Msg, deliveries: int, reason: str) -> None:
            await self._dead_letter(pool, msg, deliveries, reason)

        describe = (
            f"delivered {limit} times (the limit) without being acknowledged; each time it "
            f"was negatively acknowledged or not acknowledged within "
            f"{self._settings.ack_wait:g} s"
        )
        # One delivery more than the limit: that one is only used to notice the limit and
        # dead-letter the task with its reason.
        return await self._subscribe(
            "tasks",
            f"tasks-{pool}",
            self.task_subject(pool),
            limit + 1,
            TaskMessage.decode,
            limit=limit,
            on_term=on_term,
            describe_limit=describe,
        )

    async def results(self) -> Subscription[ResultMessage]:
        return await self._subscribe(
            "results",
            "results",
            self.result_subject,
            -1,
            ResultMessage.decode,
            ack_wait=min(self._settings.ack_wait, _HANDED_ON_ACK_WAIT_S),
            prefetch=_HANDED_ON_PREFETCH,
        )

    async def dead_letters(self) -> Subscription[DeadLetter]:
        return await self._subscribe(
            "dead",
            "dead",
            f"{self.prefix}.dead.*",
            -1,
            DeadLetter.decode,
            ack_wait=min(self._settings.ack_wait, _HANDED_ON_ACK_WAIT_S),
            prefetch=_HANDED_ON_PREFETCH,
        )

    def _reconnect_count(self) -> int:
        return int(self._nc.stats["reconnects"])

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
