"""The scheduler: starts runs, dispatches ready steps over the bus, applies results once,
retries, times out, pauses at approvals, cancels, and resumes every unfinished run after a
restart.

Each decision is a batch: the events it appends (one append, with the timers it sets or
clears), then the tasks it publishes and the deliveries it acknowledges. Appending before
publishing is what makes a crash harmless: a step recorded as dispatched whose task never
left is published again on resume (same `run/step/attempt` id, so a task that did leave
is dropped as a duplicate), and a result is acknowledged only once its events are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from flowforge.control.secrets import SecretError, SecretStore
from flowforge.control.storage import (
    ConcurrencyConflict,
    Event,
    EventType,
    NewEvent,
    RunFinished,
    RunState,
    StepStatus,
    Storage,
    StorageError,
    Timer,
    TimerKind,
)
from flowforge.control.storage.events import AppendRequest, new_run_row
from flowforge.control.workflow import (
    ExpressionError,
    WorkflowVersion,
    evaluate_input,
    evaluate_when,
    input_problems,
)
from flowforge.control.workflow.spec import DEFAULT_RETRY_ON
from flowforge.runtime import sealing
from flowforge.runtime.bus import (
    Bus,
    BusError,
    DeadLetter,
    Delivery,
    ResultMessage,
    RunEvent,
    Subscription,
    TaskMessage,
    TaskRejected,
)
from flowforge.runtime.canonical import canonical_json
from flowforge.runtime.outcome import ConnectorFailed, SandboxStopped, Success

from .audit_hooks import record_secret_read, step_artefacts
from .breaker import BreakerBoard, BreakerKey, BreakerView, target_host
from .catalog import CatalogError, VersionCatalog
from .group_commit import GroupCommit
from .observability import RunObserver
from .runs import (
    DONE,
    ActiveRun,
    Batch,
    CancelItem,
    DeadItem,
    DecisionItem,
    Dispatch,
    ExternalItem,
    Item,
    KickItem,
    ResultItem,
    RunResult,
    TimerItem,
)

log = logging.getLogger("flowforge.scheduler")

TRANSIENT: Final = frozenset(DEFAULT_RETRY_ON)  # failures a circuit breaker counts
RUN_END_KEY: Final = "run/end"
RUN_DEADLINE_KEY: Final = "run-deadline"
_POLL_S: Final = 1.0
_RESEND_MAX_S: Final = 30.0
_MAX_RELOADS: Final = 3
_EVENTS_BATCH: Final = 512  # run events published together (see `_events_loop`)
_M = TypeVar("_M", ResultMessage, DeadLetter)

Listener = Callable[[ActiveRun, Sequence[Event]], None]


class SchedulerError(Exception):
    """A request the scheduler cannot carry out; the message says why."""


class RunInputInvalid(SchedulerError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "the run's input does not fit the workflow's inputs: " + "; ".join(problems)
        )


_IDS = random.Random(secrets.token_bytes(16))  # seeded once: os.urandom per run is slow


def new_run_id() -> str:
    """Time-ordered and unique: milliseconds, then 40 random bits."""
    return f"r{int(time.time() * 1000):x}-{_IDS.getrandbits(40):010x}"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _error(kind: str, message: str, retry_after_ms: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"kind": kind, "message": message}
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
    return error


def _failure(result: ResultMessage) -> tuple[dict[str, Any], bool]:
    """The error a failed result records, and whether its kind may be retried at all."""
    outcome = result.outcome
    if isinstance(outcome, ConnectorFailed):
        f = outcome.failure
        return _error(f.kind, f.message, f.retry_after_ms), True
    if isinstance(outcome, SandboxStopped):
        return _error(outcome.reason, outcome.message), True
    assert isinstance(outcome, TaskRejected)
    return _error(outcome.reason, outcome.message), False


def approval_events(
    step: str, approved: bool, by: str | None, comment: str | None, timed_out: bool = False
) -> list[tuple[EventType, dict[str, Any]]]:
    """The events that record a decision on an approval step (a rejection fails the run)."""
    if approved:
        output = {"approved": True, "by": by, "comment": comment, "timed_out": timed_out}
        data = {"step": step, "by": by, "comment": comment, "output": output}
        return [(EventType.APPROVAL_GRANTED, data)]
    who = by or ("its timeout" if timed_out else "someone")
    reason = f"step {step} was rejected by {who}" + (f": {comment}" if comment else "")
    return [
        (EventType.APPROVAL_REJECTED, {"step": step, "by": by, "comment": comment}),
        (
            EventType.RUN_FAILED,
            {"error": {"step": step, "kind": "rejected", "message": reason}, "reason": reason},
        ),
    ]


class Scheduler:
    """Runs workflows over a bus, with their history in `storage`.

    `start()` resumes every unfinished run and starts the results, dead-letter and
    watch loops; `stop()` ends them (runs stay in the log, to be resumed).
    """

    def __init__(
        self,
        storage: Storage,
        bus: Bus,
        catalog: VersionCatalog,
        *,
        secrets: SecretStore | None = None,
        pool_keys: Path | None = None,
        breakers: BreakerBoard | None = None,
        publish_events: bool = True,
        step_grace_s: float | None = None,
        watch_s: float = 0.5,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.storage = storage
        self.bus = bus
        self.catalog = catalog
        self.secrets = secrets
        self.pool_keys = pool_keys
        self.breakers = breakers or BreakerBoard()
        self.publish_events = publish_events
        settings = bus.settings
        # How long after an attempt's own timeout the scheduler stops waiting for its
        # result: long enough for every redelivery the bus would make.
        self.step_grace_s = (
            step_grace_s
            if step_grace_s is not None
            else settings.ack_wait * (settings.max_deliver + 1) + 5.0
        )
        self.watch_s = watch_s
        self.rand = rand
        self.listeners: list[Listener] = []
        self._runs: dict[str, ActiveRun] = {}
        self._active: dict[str, set[str]] = {}  # workflow -> admitted run ids
        self._queued: dict[str, deque[str]] = {}  # workflow -> runs waiting for a slot
        self._loops: list[asyncio.Task[None]] = []
        self._drains: set[asyncio.Task[None]] = set()
        self._resends: set[asyncio.Task[None]] = set()  # tasks the bus refused, sent again
        self._group = GroupCommit(storage.events)  # busy runs share their commits
        self._pool_public: dict[str, bytes] = {}
        self._config_json: dict[tuple[str, str], str] = {}
        self._events_out: asyncio.Queue[RunEvent] | None = None
        self._finished: dict[str, RunResult] = {}
        self._closing = False
        self.observer = RunObserver(storage)  # traces, metrics and step logs

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the unfinished runs, then serve results, dead letters and timers."""
        results = await self.bus.results()
        dead = await self.bus.dead_letters()
        await self.resume()
        self.observer.start(self, self._runs.values, self.breakers.views)
        self._loops.append(asyncio.create_task(self._results_loop(results)))
        self._loops.append(asyncio.create_task(self._dead_loop(dead)))
        self._loops.append(asyncio.create_task(self._watch_loop()))
        if self.publish_events:
            self._events_out = asyncio.Queue()
            self._loops.append(asyncio.create_task(self._events_loop(self._events_out)))

    async def stop(self) -> None:
        self._closing = True
        self.observer.stop(self)
        for task in self._loops:
            await _cancelled(task)
        self._loops.clear()
        for task in self._resends:
            task.cancel()
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        for run in self._runs.values():
            for handle in run.timers.values():
                handle.cancel()
            run.timers.clear()
            if not run.done.done():
                run.done.cancel()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # --- public requests --------------------------------------------------------------

    async def start_run(
        self,
        version: WorkflowVersion,
        input: Any,
        project: str = "default",
        *,
        run_id: str | None = None,
        unsigned_dev: bool = False,
        trigger: Mapping[str, Any] | None = None,
    ) -> str:
        """Validate `input`, store the version, record the run and dispatch what is ready.
        `trigger` (what started it, e.g. `{"type": "cron", "schedule": ...}`) goes into the
        run-started event."""
        problems = input_problems(version, input)
        if problems:
            raise RunInputInvalid(problems)
        await self.catalog.put(version)
        run_id = run_id or new_run_id()
        run = ActiveRun(run_id, version, project, input, unsigned_dev=unsigned_dev)
        run.busy = True  # nothing else touches it until its first events are stored
        self._runs[run_id] = run
        batch = Batch()
        started: dict[str, Any] = {
            "steps": list(version.steps),
            "inputs": input,
            "workflow": version.name,
            "version": version.version,
            "project": project,
        }
        if unsigned_dev:
            started["unsigned_dev"] = True
        if trigger:
            started["trigger"] = dict(trigger)
        self.observer.run_started(run, started)
        run.emit(batch, EventType.RUN_STARTED, started)
        if version.timeout_s is not None:
            due = time.time() + version.timeout_s
            run.deadline = due
            data = {"timeout_s": version.timeout_s}
            batch.set_timer(Timer(run_id, RUN_DEADLINE_KEY, TimerKind.RUN_DEADLINE, _dt(due), data))
        if self._admit(run):
            self._advance(run, batch, None)
        try:
            row = new_run_row(
                run_id, workflow=version.name, version=version.version, project=project, input=input
            )
            await self._commit(run, batch, row)
        except BaseException:
            self._forget(run)
            raise
        await self._settle(run, batch)
        run.busy = False
        if run.inbox:
            self._spawn_drain(run)
        return run_id

    async def wait(self, run_id: str, timeout: float | None = None) -> RunResult:
        """The run once it has finished (from memory, else from its stored events)."""
        run = self._runs.get(run_id)
        if run is not None:
            return await asyncio.wait_for(asyncio.shield(run.done), timeout)
        finished = self._finished.get(run_id)
        if finished is not None:
            return finished
        state = RunState.fold(await self.storage.events.read(run_id))
        if state.run_id is None:
            raise SchedulerError(f"no run {run_id!r}")
        return RunResult(run_id, state)

    def active(self, run_id: str) -> ActiveRun | None:
        return self._runs.get(run_id)

    async def approve(
        self, run_id: str, step: str, by: str | None = None, comment: str | None = None
    ) -> None:
        await self._decide(run_id, step, True, by, comment)

    async def reject(
        self, run_id: str, step: str, by: str | None = None, comment: str | None = None
    ) -> None:
        await self._decide(run_id, step, False, by, comment)

    async def cancel(self, run_id: str, reason: str = "cancelled") -> None:
        run = self._require(run_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._post(run, CancelItem(reason, done))
        await done

    def breaker_views(self) -> list[BreakerView]:
        return self.breakers.views()

    # --- resume -----------------------------------------------------------------------

    async def resume(self) -> list[str]:
        """Take up every unfinished run in the log: fold its events, re-arm its timers and
        publish again the tasks dispatched without a result."""
        resumed: list[str] = []
        for record in await self.storage.events.unfinished_runs():
            if record.id in self._runs:
                continue
            events = await self.storage.events.read(record.id)
            state = RunState.fold(events)
            try:
                version = await self.catalog.get(record.version)
            except (CatalogError, StorageError) as exc:
                await self._abandon(record.id, state, f"cannot resume: {exc}")
                continue
            started = events[0].data if events else {}
            run = ActiveRun(
                record.id,
                version,
                record.project,
                record.input,
                unsigned_dev=bool(started.get("unsigned_dev")),
                state=state,
            )
            self._runs[run.id] = run
            self.observer.run_resumed(run, started)
            if any(s.status is not StepStatus.PENDING for s in state.steps.values()):
                run.admitted = True
                self._active.setdefault(version.name, set()).add(run.id)
            else:
                self._admit(run)
            for timer in await self.storage.events.timers(run.id):
                if timer.kind is TimerKind.RUN_DEADLINE:
                    run.deadline = timer.due_at.timestamp()
                self._arm(run, timer)
            for step_id, step in state.steps.items():
                if step.status is StepStatus.DISPATCHED:
                    await self._republish(run, step_id, step.attempt, step.dispatched_at)
            self._post(run, KickItem())
            resumed.append(run.id)
        if resumed:
            log.info("resumed %d runs", len(resumed))
        return resumed

    async def _republish(
        self, run: ActiveRun, step_id: str, attempt: int, dispatched_at: datetime | None
    ) -> None:
        try:
            value = evaluate_input(run.version.steps[step_id].input_mapping, run.context)
        except ExpressionError as exc:
            self._post(run, ResultItem(_rejected(run.id, step_id, attempt, str(exc))))
            return
        since = dispatched_at.timestamp() if dispatched_at is not None else time.time()
        self._arm_step_deadline(run, step_id, attempt, since)
        run.inflight.setdefault(step_id, self._breaker_key(run, step_id, value))
        await self._publish_task(run, Dispatch(step_id, attempt, value))

    async def _abandon(self, run_id: str, state: RunState, reason: str) -> None:
        log.error("run %s: %s", run_id, reason)
        data = {"error": {"kind": "resume", "message": reason}, "reason": reason}
        with contextlib.suppress(StorageError):
            await self.storage.events.append(
                run_id,
                state.last_seq,
                [_new(EventType.RUN_FAILED, data, RUN_END_KEY)],
            )

    # --- loops ------------------------------------------------------------------------

    async def _results_loop(self, subscription: Subscription[ResultMessage]) -> None:
        await self._consume(subscription, "result", ResultItem)

    async def _dead_loop(self, subscription: Subscription[DeadLetter]) -> None:
        await self._consume(subscription, "dead letter", DeadItem)

    async def _consume(
        self,
        subscription: Subscription[_M],
        what: str,
        item: Callable[[_M, Delivery[_M]], ResultItem | DeadItem],
    ) -> None:
        """Hand each message to its run's inbox; a finished run's late or duplicate
        message has nothing left to apply and is acked."""
        try:
            while True:
                try:
                    delivery = await subscription.next(_POLL_S)
                except BusError as exc:
                    log.warning("could not take a %s: %s", what, exc)
                    await asyncio.sleep(_POLL_S)
                    continue
                if delivery is None:
                    continue
                run = self._runs.get(delivery.message.run_id)
                if run is None:
                    await _quietly(delivery.ack())
                    continue
                self._post(run, item(delivery.message, delivery))
        finally:
            await subscription.close()

    async def _watch_loop(self) -> None:
        """Runs paused at an approval may be decided by another process (`flowforge run
        approve` against the same database): look for events appended behind our back."""
        while True:
            await asyncio.sleep(self.watch_s)
            for run in list(self._runs.values()):
                if not run.state.waiting_approval or run.busy:
                    continue
                try:
                    new = await self.storage.events.read(run.id, run.state.last_seq)
                except StorageError as exc:
                    log.warning("run %s: could not read its log: %s", run.id, exc)
                    continue
                if new and not run.busy and new[0].seq == run.state.last_seq + 1:
                    self._post(run, ExternalItem(tuple(new)))

    async def _events_loop(self, queue: asyncio.Queue[RunEvent]) -> None:
        """Publish the run events, many runs' at once and each run's in seq order.

        A run's subject must hold its events in order: a reader skips a seq lower than
        one it has seen, and a publish retried after a later one went through would land
        behind it. So each run's events go one after the other, each publish awaiting its
        acknowledgement, while the runs in a batch go together: when many runs are
        deciding, the waits overlap and the messages share the connection's writes.
        A batch finishes before the next starts, so no run's events overtake each other."""
        while True:
            batch = [await queue.get()]
            while len(batch) < _EVENTS_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            by_run: dict[str, list[RunEvent]] = {}
            for event in batch:
                by_run.setdefault(event.run_id, []).append(event)
            if len(by_run) == 1:
                await self._publish_events(batch)
            else:
                await asyncio.gather(*(self._publish_events(run) for run in by_run.values()))

    async def _publish_events(self, events: Sequence[RunEvent]) -> None:
        for event in events:
            try:
                await self.bus.publish_event(event)
            except BusError as exc:
                log.warning("could not publish event %s: %s", event.msg_id, exc)

    # --- the inbox --------------------------------------------------------------------

    def _require(self, run_id: str) -> ActiveRun:
        run = self._runs.get(run_id)
        if run is None:
            raise SchedulerError(f"run {run_id} is not active here (finished, or unknown)")
        return run

    async def _decide(
        self, run_id: str, step: str, approved: bool, by: str | None, comment: str | None
    ) -> None:
        run = self._require(run_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._post(run, DecisionItem(step, approved, by, comment, done))
        await done

    def _post(self, run: ActiveRun, item: Item) -> None:
        run.inbox.append(item)
        if not run.busy:
            self._spawn_drain(run)

    def _spawn_drain(self, run: ActiveRun) -> None:
        run.busy = True
        task = asyncio.create_task(self._drain(run))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, run: ActiveRun) -> None:
        try:
            reloads = 0
            while run.inbox and not self._closing:
                items, run.inbox = run.inbox, []
                stored = (run.state.status, tuple(sorted(run.state.waiting_approval)))
                batch = Batch(stored=stored)
                for item in items:
                    self._handle(run, batch, item)
                if not run.state.status.finished and run.admitted:
                    self._advance(run, batch, None if batch.full_scan else batch.finished_steps)
                try:
                    await self._commit(run, batch)
                except (ConcurrencyConflict, RunFinished) as exc:
                    reloads += 1
                    log.info("run %s: %s; re-reading its log", run.id, exc)
                    await self._reload(run)
                    if reloads <= _MAX_RELOADS:
                        run.inbox[:0] = items
                        continue
                    await self._give_up(batch, exc)
                    continue
                except Exception as exc:
                    log.exception("run %s: could not record a decision", run.id)
                    await self._reload(run)
                    await self._give_up(batch, exc)
                    continue
                await self._settle(run, batch)
        finally:
            run.busy = False
            if run.inbox and not self._closing and run.id in self._runs:
                self._spawn_drain(run)

    async def _give_up(self, batch: Batch, exc: BaseException) -> None:
        for delivery in batch.acks:
            await _quietly(delivery.nak(1.0))
        for future in batch.futures:
            if not future.done():
                future.set_exception(SchedulerError(f"not recorded: {exc}"))

    async def _reload(self, run: ActiveRun) -> None:
        events = await self.storage.events.read(run.id)
        run.state = RunState.fold(events)
        run.rebuild_context()
        if run.state.status.finished:
            self._finish(run)

    async def _commit(
        self, run: ActiveRun, batch: Batch, new_run: dict[str, Any] | None = None
    ) -> None:
        """Store the decision: its events, timers, log lines and artefacts (and, with
        `new_run`, the run's row) in one append."""
        batch.artefacts = await step_artefacts(self.secrets, run, batch)  # AUD: artefacts
        if new_run is None and not (
            batch.events or batch.set_timers or batch.clear_timers or batch.logs
        ):
            return
        expected = run.state.last_seq - len(batch.events)
        status, waiting = batch.stored or (None, ())
        request = AppendRequest(
            run.id,
            expected,
            batch.events,
            list(batch.set_timers.values()),
            batch.clear_timers,
            new_run,
            batch.logs,
            batch.artefacts,
            status,
            waiting,
        )
        appended = await self._group.append(request)
        if appended.duplicates:
            # Someone else recorded some of these already: our state is not the log's.
            raise ConcurrencyConflict(run.id, expected, appended.last_seq)

    async def _settle(self, run: ActiveRun, batch: Batch) -> None:
        """After the batch is stored: timers, tasks, acknowledgements, listeners."""
        for key in batch.clear_timers:
            handle = run.timers.pop(key, None)
            if handle is not None:
                handle.cancel()
        for timer in batch.set_timers.values():
            self._arm(run, timer)
        if batch.dispatches:
            await self._publish_all(run, batch.dispatches)
        for delivery in batch.acks:
            await _quietly(delivery.ack())
        for future in batch.futures:
            if not future.done():
                future.set_result(None)
        if batch.events or batch.external:
            self._announce(run, batch)
        if run.state.status.finished:
            self._finish(run)

    def _announce(self, run: ActiveRun, batch: Batch) -> None:
        if not self.listeners and self._events_out is None:
            return
        first = run.state.last_seq - len(batch.events) + 1
        events = [
            *batch.external,
            *(
                Event(run.id, first + i, e.type, dict(e.data), e.at or datetime.now(UTC), e.key)
                for i, e in enumerate(batch.events)
            ),
        ]
        for listener in self.listeners:
            try:
                listener(run, events)
            except Exception:
                log.exception("a run listener failed")
        if self._events_out is not None:
            for event in events:
                self._events_out.put_nowait(
                    RunEvent(run.id, event.seq, event.type.value, event.data, event.at.timestamp())
                )

    # --- handling one item ------------------------------------------------------------

    def _handle(self, run: ActiveRun, batch: Batch, item: Item) -> None:
        if isinstance(item, ResultItem):
            if item.delivery is not None:
                batch.acks.append(item.delivery)
            self._on_result(run, batch, item.result)
        elif isinstance(item, DeadItem):
            if item.delivery is not None:
                batch.acks.append(item.delivery)
            self._on_dead(run, batch, item.letter)
        elif isinstance(item, TimerItem):
            self._on_timer(run, batch, item.timer)
        elif isinstance(item, DecisionItem):
            batch.futures.append(item.done)
            self._on_decision(run, batch, item)
        elif isinstance(item, CancelItem):
            batch.futures.append(item.done)
            if not run.state.status.finished:
                run.emit(batch, EventType.RUN_CANCELLED, {"reason": item.reason}, RUN_END_KEY)
        elif isinstance(item, ExternalItem):
            self._on_external(run, batch, item.events)
        else:
            batch.full_scan = True

    def _on_result(self, run: ActiveRun, batch: Batch, result: ResultMessage) -> None:
        step_id, attempt = result.step_id, result.attempt
        if (
            run.state.status.finished
            or run.status(step_id) is not StepStatus.DISPATCHED
            or run.attempt(step_id) != attempt
        ):
            return  # a duplicate, or a result for an attempt already given up on
        self._disarm(run, _deadline_key(step_id))
        bkey = run.inflight.pop(step_id, None)
        self.observer.result_applied(run, batch, result)
        outcome = result.outcome
        run.sandbox_ms += outcome.stats.wall_ms
        key = f"result/{step_id}/{attempt}"
        wall_ms = round(outcome.stats.wall_ms, 3)
        if isinstance(outcome, Success):
            if bkey is not None:
                self.breakers.succeeded(bkey)
            try:
                output = json.loads(outcome.output)
            except ValueError as exc:
                error = _error("internal", f"the step's output is not JSON: {exc}")
                self._fail_step(run, batch, step_id, attempt, error, key)
                return
            data: dict[str, Any] = {
                "step": step_id,
                "attempt": attempt,
                "output": output,
                "worker": result.worker_id,
                "wall_ms": wall_ms,
            }
            if result.unsigned_dev:
                data["unsigned_dev"] = True
            run.emit(batch, EventType.STEP_SUCCEEDED, data, key)
            run.context["steps"][step_id] = {"output": output}
            batch.finished_steps.append(step_id)
            return
        error, retryable = _failure(result)
        error["wall_ms"] = wall_ms
        if bkey is not None:
            if error["kind"] in TRANSIENT:
                self.breakers.failed(bkey)
            else:
                self.breakers.released(bkey)
        self._failed_attempt(run, batch, step_id, attempt, error, key, retryable)

    def _failed_attempt(
        self,
        run: ActiveRun,
        batch: Batch,
        step_id: str,
        attempt: int,
        error: dict[str, Any],
        key: str,
        retryable: bool = True,
    ) -> None:
        policy = run.version.steps[step_id].retry
        if retryable and policy.should_retry(error["kind"], attempt):
            delay_ms = policy.backoff_ms(
                attempt, retry_after_ms=error.get("retry_after_ms"), random=self.rand()
            )
            due = time.time() + delay_ms / 1000
            data = {"step": step_id, "attempt": attempt, "error": error, "retry_at": _iso(due)}
            run.emit(batch, EventType.STEP_RETRY_SCHEDULED, data, key)
            why = f"{error['kind']}: {error['message']}"
            line = f"attempt {attempt} failed ({why}); retry at {data['retry_at']}"
            self.observer.step_line(batch, run, step_id, attempt, "warn", line)
            batch.set_timer(
                Timer(
                    run.id,
                    _retry_key(step_id),
                    TimerKind.RETRY,
                    _dt(due),
                    {"step": step_id, "attempt": attempt + 1},
                )
            )
            return
        self._fail_step(run, batch, step_id, attempt, error, key)

    def _fail_step(
        self,
        run: ActiveRun,
        batch: Batch,
        step_id: str,
        attempt: int,
        error: dict[str, Any],
        key: str | None,
    ) -> None:
        run.emit(
            batch, EventType.STEP_FAILED, {"step": step_id, "attempt": attempt, "error": error}, key
        )
        tries = f" after {attempt} attempts" if attempt > 1 else ""
        reason = f"step {step_id} failed{tries}: {error['kind']}: {error['message']}"
        self.observer.step_line(batch, run, step_id, attempt, "error", reason)
        run_error = {"step": step_id, "kind": error["kind"], "message": error["message"]}
        run.emit(batch, EventType.RUN_FAILED, {"error": run_error, "reason": reason}, RUN_END_KEY)

    def _on_dead(self, run: ActiveRun, batch: Batch, letter: DeadLetter) -> None:
        task = letter.task
        if task is None:
            return
        step_id, attempt = task.step_id, task.attempt
        if (
            run.state.status.finished
            or run.status(step_id) is not StepStatus.DISPATCHED
            or run.attempt(step_id) != attempt
        ):
            return
        self._disarm(run, _deadline_key(step_id))
        run.inflight.pop(step_id, None)
        message = (
            f"the task was dead-lettered after {letter.deliveries} deliveries: {letter.reason}"
        )
        self.observer.attempt_lost(run, step_id, attempt, "dead-letter", message)
        self._fail_step(
            run,
            batch,
            step_id,
            attempt,
            _error("dead-letter", message),
            f"result/{step_id}/{attempt}",
        )

    def _on_timer(self, run: ActiveRun, batch: Batch, timer: Timer) -> None:
        run.timers.pop(timer.key, None)
        if run.state.status.finished:
            return
        step_id = str(timer.data.get("step", ""))
        if timer.kind is TimerKind.RUN_DEADLINE:
            timeout = timer.data.get("timeout_s")
            reason = (
                f"the run's deadline ({timeout:g} s) passed"
                if timeout
                else "the run's deadline passed"
            )
            data = {"error": {"kind": "timeout", "message": reason}, "reason": reason}
            run.emit(batch, EventType.RUN_FAILED, data, RUN_END_KEY)
            return
        if timer.kind is TimerKind.RETRY:
            attempt = int(timer.data.get("attempt", 1))
            batch.clear_timer(timer.key)
            if run.status(step_id) is StepStatus.RETRY_SCHEDULED:
                self._dispatch(run, batch, step_id, attempt)
            return
        if timer.kind is TimerKind.APPROVAL_DEADLINE:
            batch.clear_timer(timer.key)
            if run.status(step_id) is not StepStatus.WAITING_APPROVAL:
                return
            approval = run.version.steps[step_id].approval
            approve = approval is not None and approval.on_timeout == "approve"
            comment = f"no decision within {timer.data.get('timeout_s', '?')} s"
            self._record_decision(run, batch, step_id, approve, None, comment, timed_out=True)
            return
        # A step deadline: the attempt's result never came (in memory only).
        attempt = int(timer.data.get("attempt", 0))
        if run.status(step_id) is StepStatus.DISPATCHED and run.attempt(step_id) == attempt:
            run.inflight.pop(step_id, None)
            waited = timer.data.get("waited_s", 0)
            error = _error("timeout", f"no result within {waited:g} s of the dispatch")
            self.observer.attempt_lost(run, step_id, attempt, "timeout", error["message"])
            self._failed_attempt(run, batch, step_id, attempt, error, f"result/{step_id}/{attempt}")

    def _on_decision(self, run: ActiveRun, batch: Batch, item: DecisionItem) -> None:
        status = run.status(item.step)
        if item.step not in run.version.steps:
            raise_in(item.done, SchedulerError(f"run {run.id} has no step {item.step!r}"))
            return
        if run.state.status.finished or status is not StepStatus.WAITING_APPROVAL:
            why = (
                f"the run is {run.state.status}" if run.state.status.finished else f"it is {status}"
            )
            raise_in(
                item.done,
                SchedulerError(
                    f"step {item.step} of run {run.id} is not waiting for approval ({why})"
                ),
            )
            return
        batch.clear_timer(_approval_key(item.step))
        self._record_decision(run, batch, item.step, item.approved, item.by, item.comment)

    def _record_decision(
        self,
        run: ActiveRun,
        batch: Batch,
        step_id: str,
        approved: bool,
        by: str | None,
        comment: str | None,
        timed_out: bool = False,
    ) -> None:
        for kind, data in approval_events(step_id, approved, by, comment, timed_out):
            key = RUN_END_KEY if kind is EventType.RUN_FAILED else f"approval/{step_id}"
            run.emit(batch, kind, data, key)
        if approved:
            step = run.state.steps[step_id]
            run.context["steps"][step_id] = {"output": step.output}
            batch.finished_steps.append(step_id)

    def _on_external(self, run: ActiveRun, batch: Batch, events: Sequence[Event]) -> None:
        if batch.events or (events and events[0].seq != run.state.last_seq + 1):
            batch.full_scan = True  # out of step: a reload settles it
            return
        for event in events:
            run.state.apply(event)
            batch.external.append(event)
            step_id = event.data.get("step")
            if isinstance(step_id, str) and event.type is EventType.APPROVAL_GRANTED:
                run.context["steps"][step_id] = {"output": run.state.steps[step_id].output}
                batch.finished_steps.append(step_id)
            if isinstance(step_id, str) and event.type in (
                EventType.APPROVAL_GRANTED,
                EventType.APPROVAL_REJECTED,
            ):
                handle = run.timers.pop(_approval_key(step_id), None)
                if handle is not None:
                    handle.cancel()
        if run.state.status.finished:
            self._finish(run)

    # --- deciding what runs -----------------------------------------------------------

    def _advance(self, run: ActiveRun, batch: Batch, changed: Iterable[str] | None) -> None:
        """Start (or skip) every step whose needs are done; finish the run when all are."""
        version = run.version
        dependents = _dependents(version)
        queue: deque[str] = deque(
            version.steps if changed is None else _expand(changed, dependents)
        )
        steps = run.state.steps
        while queue and not run.state.status.finished:
            step_id = queue.popleft()
            if run.status(step_id) is not StepStatus.PENDING:
                continue
            planned = version.steps[step_id]
            if not all(
                (s := steps.get(need)) is not None and s.status in DONE for need in planned.needs
            ):
                continue
            if planned.when is not None:
                try:
                    run_it = evaluate_when(planned.when, run.context)
                except ExpressionError as exc:
                    self._fail_step(run, batch, step_id, 0, _error("expression", str(exc)), None)
                    return
                if not run_it:
                    data = {"step": step_id, "reason": f"when {planned.when} is false"}
                    run.emit(batch, EventType.STEP_SKIPPED, data, f"skip/{step_id}")
                    queue.extend(dependents[step_id])
                    continue
            if planned.kind == "approval":
                self._request_approval(run, batch, step_id)
            else:
                self._dispatch(run, batch, step_id, 1)
        if not run.state.status.finished and all(
            (s := steps.get(step_id)) is not None and s.status in DONE for step_id in version.steps
        ):
            run.emit(batch, EventType.RUN_SUCCEEDED, {"outputs": _outputs(run)}, RUN_END_KEY)

    def _request_approval(self, run: ActiveRun, batch: Batch, step_id: str) -> None:
        planned = run.version.steps[step_id]
        data: dict[str, Any] = {"step": step_id}
        if planned.approval is not None and planned.approval.message:
            try:
                data["message"] = evaluate_input(planned.approval.message, run.context)
            except ExpressionError as exc:
                data["message"] = f"(the message could not be evaluated: {exc})"
        if planned.timeout_s is not None:
            due = time.time() + planned.timeout_s
            data["deadline"] = _iso(due)
            timer_data = {"step": step_id, "timeout_s": planned.timeout_s}
            batch.set_timer(
                Timer(
                    run.id,
                    _approval_key(step_id),
                    TimerKind.APPROVAL_DEADLINE,
                    _dt(due),
                    timer_data,
                )
            )
        run.emit(batch, EventType.APPROVAL_REQUESTED, data, f"approval-requested/{step_id}")

    def _dispatch(self, run: ActiveRun, batch: Batch, step_id: str, attempt: int) -> None:
        planned = run.version.steps[step_id]
        try:
            value = evaluate_input(planned.input_mapping, run.context)
        except ExpressionError as exc:
            self._fail_step(run, batch, step_id, attempt, _error("invalid-input", str(exc)), None)
            return
        bkey = self._breaker_key(run, step_id, value)
        wait_until = self.breakers.admit(bkey)
        if wait_until is not None:
            message = f"the circuit breaker for {bkey[0]} at {bkey[1]} is open"
            data = {
                "step": step_id,
                "attempt": attempt - 1,
                "error": _error("circuit-open", message),
                "retry_at": _iso(wait_until),
            }
            run.emit(batch, EventType.STEP_RETRY_SCHEDULED, data, None)
            line = f"{message}: attempt {attempt} waits until {data['retry_at']}"
            self.observer.step_line(batch, run, step_id, attempt, "warn", line)
            timer_data = {"step": step_id, "attempt": attempt}
            batch.set_timer(
                Timer(run.id, _retry_key(step_id), TimerKind.RETRY, _dt(wait_until), timer_data)
            )
            return
        run.emit(
            batch,
            EventType.STEP_DISPATCHED,
            {"step": step_id, "attempt": attempt},
            f"dispatch/{step_id}/{attempt}",
        )
        run.inflight[step_id] = bkey
        self._arm_step_deadline(run, step_id, attempt, time.time())
        batch.dispatches.append(Dispatch(step_id, attempt, value))

    def _breaker_key(self, run: ActiveRun, step_id: str, value: Any) -> BreakerKey:
        planned = run.version.steps[step_id]
        name = planned.connector.name if planned.connector is not None else step_id
        return (name, target_host(planned.config, value, planned.grants.network))

    # --- concurrency ------------------------------------------------------------------

    def _admit(self, run: ActiveRun) -> bool:
        limit = run.version.concurrency
        active = self._active.setdefault(run.version.name, set())
        if limit is None or len(active) < limit:
            active.add(run.id)
            run.admitted = True
            return True
        self._queued.setdefault(run.version.name, deque()).append(run.id)
        return False

    def _finish(self, run: ActiveRun) -> None:
        if self._runs.get(run.id) is not run:
            return
        self._forget(run)
        self.observer.run_finished(run)
        result = RunResult(run.id, run.state, run.sandbox_ms)
        self._finished[run.id] = result
        if len(self._finished) > 10_000:  # a bounded memory of recent results for wait()
            self._finished.pop(next(iter(self._finished)))
        if not run.done.done():
            run.done.set_result(result)
        queued = self._queued.get(run.version.name)
        while queued and run.version.concurrency is not None:
            active = self._active.setdefault(run.version.name, set())
            if len(active) >= run.version.concurrency:
                break
            nxt = self._runs.get(queued.popleft())
            if nxt is None:
                continue
            active.add(nxt.id)
            nxt.admitted = True
            self._post(nxt, KickItem())

    def _forget(self, run: ActiveRun) -> None:
        self._runs.pop(run.id, None)
        self._active.get(run.version.name, set()).discard(run.id)
        for handle in run.timers.values():
            handle.cancel()
        run.timers.clear()

    # --- timers -----------------------------------------------------------------------

    def _arm(self, run: ActiveRun, timer: Timer) -> None:
        old = run.timers.pop(timer.key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, timer.due_at.timestamp() - time.time())
        loop = asyncio.get_running_loop()
        run.timers[timer.key] = loop.call_later(delay, self._fire, run, timer)

    def _disarm(self, run: ActiveRun, key: str) -> None:
        handle = run.timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, run: ActiveRun, timer: Timer) -> None:
        if self._runs.get(run.id) is run:
            self._post(run, TimerItem(timer))

    def _arm_step_deadline(self, run: ActiveRun, step_id: str, attempt: int, since: float) -> None:
        timeout = run.version.steps[step_id].timeout_s
        if timeout is None:
            return
        waited = timeout + self.step_grace_s
        due = since + waited
        data = {"step": step_id, "attempt": attempt, "waited_s": round(waited, 3)}
        self._arm(
            run, Timer(run.id, _deadline_key(step_id), TimerKind.STEP_DEADLINE, _dt(due), data)
        )

    # --- publishing -------------------------------------------------------------------

    async def _publish_task(self, run: ActiveRun, dispatch: Dispatch) -> None:
        planned = run.version.steps[dispatch.step]
        assert planned.connector is not None
        sealed: str | None = None
        if planned.grants.secrets:
            try:
                sealed = await self._seal(run, dispatch.step, planned.pool, planned.grants.secrets)
                await record_secret_read(self.storage, run, dispatch, planned.grants.secrets)  # AUD
            except (SecretError, sealing.SealError, StorageError) as exc:
                self._post(
                    run, ResultItem(_rejected(run.id, dispatch.step, dispatch.attempt, str(exc)))
                )
                return
        config_key = (run.version.version, dispatch.step)
        config = self._config_json.get(config_key)
        if config is None:
            config = canonical_json(dict(planned.config)).decode("utf-8")
            self._config_json[config_key] = config
        task = TaskMessage(
            run.id,
            dispatch.step,
            dispatch.attempt,
            planned.pool,
            planned.connector.digest,
            config=config,
            input=json.dumps(dispatch.input, ensure_ascii=False, separators=(",", ":")),
            network=planned.grants.network,
            secrets=sealed,
            limits=planned.limits,
            deadline=run.deadline,
            traceparent=self.observer.task_traceparent(run, dispatch.step, dispatch.attempt),
        )
        try:
            await self.bus.publish_task(task)
        except BusError as exc:
            # The step stays dispatched and the task is sent again in the background (a
            # step without a timeout has no deadline to notice a task that never left).
            log.warning("run %s: could not publish %s: %s", run.id, task.msg_id, exc)
            resend = asyncio.create_task(self._resend(run, task))
            self._resends.add(resend)
            resend.add_done_callback(self._resends.discard)

    async def _resend(self, run: ActiveRun, task: TaskMessage) -> None:
        """Publish `task` again until the bus takes it (same id: a copy that did get
        through is dropped), or its attempt is over (a result, a deadline, the run ended)."""
        pause = _POLL_S
        while (
            self._runs.get(run.id) is run
            and run.status(task.step_id) is StepStatus.DISPATCHED
            and run.attempt(task.step_id) == task.attempt
        ):
            await asyncio.sleep(pause)
            try:
                await self.bus.publish_task(task)
                return
            except BusError as exc:
                log.warning("run %s: could not publish %s again: %s", run.id, task.msg_id, exc)
                pause = min(pause * 2, _RESEND_MAX_S)

    async def _publish_all(self, run: ActiveRun, dispatches: Sequence[Dispatch]) -> None:
        if len(dispatches) == 1:
            await self._publish_task(run, dispatches[0])
        else:
            await asyncio.gather(*(self._publish_task(run, d) for d in dispatches))

    async def _seal(
        self, run: ActiveRun, step_id: str, pool: str, grants: Mapping[str, str]
    ) -> str:
        if self.secrets is None:
            raise SecretError("this scheduler has no secret store, and the step is granted secrets")
        values = await self.secrets.resolve(run.project, grants)
        run.secret_masks[step_id] = values
        public = self._pool_public.get(pool)
        if public is None:
            if self.pool_keys is None:
                raise sealing.SealError("no pool key folder: secrets cannot be sealed")
            public = sealing.pool_keypair(self.pool_keys, pool).public
            self._pool_public[pool] = public
        return sealing.seal(values, public)


# --- helpers -----------------------------------------------------------------------------


def raise_in(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it to end. Cancelled again until it does: on Python
    3.11 an `asyncio.wait_for` (the NATS client's requests and pulls use it) whose inner
    future completes as the cancel arrives swallows the cancel, and the loop would go on
    (this is what hung `bench.workflows` at its end)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        log.error("a scheduler loop had failed", exc_info=task.exception())


async def _quietly(call: Any) -> None:
    try:
        await call
    except BusError as exc:
        log.warning("could not settle a delivery: %s", exc)


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _new(kind: EventType, data: dict[str, Any], key: str | None) -> NewEvent:
    return NewEvent(kind, data, key)


def _retry_key(step_id: str) -> str:
    return f"retry/{step_id}"


def _approval_key(step_id: str) -> str:
    return f"approval/{step_id}"


def _deadline_key(step_id: str) -> str:
    return f"deadline/{step_id}"


def _rejected(run_id: str, step_id: str, attempt: int, message: str) -> ResultMessage:
    outcome = TaskRejected("secrets-unreadable", message)
    return ResultMessage(run_id, step_id, attempt, "scheduler", outcome)


_DEPENDENTS: dict[str, dict[str, tuple[str, ...]]] = {}


def _dependents(version: WorkflowVersion) -> dict[str, tuple[str, ...]]:
    found = _DEPENDENTS.get(version.version)
    if found is None:
        found = dict(version.dependents())
        _DEPENDENTS[version.version] = found
    return found


def _expand(changed: Iterable[str], dependents: dict[str, tuple[str, ...]]) -> list[str]:
    seen: dict[str, None] = {}
    for step_id in changed:
        for dependent in dependents.get(step_id, ()):
            seen.setdefault(dependent, None)
    return list(seen)


def _outputs(run: ActiveRun) -> dict[str, Any]:
    """The outputs of the steps nothing else needs (the workflow's results)."""
    dependents = _dependents(run.version)
    return {
        step_id: run.context["steps"][step_id]["output"]
        for step_id in run.version.steps
        if not dependents[step_id] and step_id in run.context["steps"]
    }


__all__ = [
    "RUN_END_KEY",
    "TRANSIENT",
    "Listener",
    "RunInputInvalid",
    "Scheduler",
    "SchedulerError",
    "approval_events",
    "new_run_id",
]
