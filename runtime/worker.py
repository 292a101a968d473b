"""The worker: takes tasks of one pool from the bus, runs each in the sandbox, publishes
the result, and only then acknowledges the task.

Acknowledging after the result is on the bus is what makes a crash harmless: a worker that
dies mid-step never acked, so the task comes back to another worker after the ack wait,
and the duplicate result (same `run/step/attempt` id) is dropped. Long steps send
in-progress heartbeats every third of the ack wait so they are not handed out twice.

`drain()` (SIGTERM in `flowforge worker`) stops taking tasks; `run()` returns once the
ones held are finished and settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from .bus.base import Bus, BusError, Delivery, Subscription
from .bus.messages import ResultMessage, TaskMessage, TaskOutcome, TaskRejected
from .limits import Limits
from .loader import LoadError
from .outcome import SandboxStopped
from .package import PACKAGE_SUFFIX, PackageError
from .sandbox import Grants, LoadedPackage, Sandbox
from .telemetry import spans
from .telemetry.propagation import ids_of
from .trust import TrustStore

log = logging.getLogger("flowforge.worker")

Unseal = Callable[[str], Mapping[str, str]]
_RESULT_RETRY_DELAY_S = 1.0
_POLL_S = 1.0  # how long one pull waits, so a drain is noticed within this time


class PackageMissing(Exception):
    """No package file with the digest a task names."""


class PackageSource(Protocol):
    """Where a worker finds package files by their sha256 digest."""

    def read(self, digest: str) -> bytes:
        """The package file's bytes; raises PackageMissing."""
        ...


class DirectoryPackageSource:
    """A folder of `<digest>.ffpkg` files: a workspace's `packages/`, where installs go."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, digest: str) -> bytes:
        # Only hex digests: the digest comes off the bus and must not name another path.
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise PackageMissing(f"{digest!r} is not a sha256 hex digest")
        path = self.root / f"{digest}{PACKAGE_SUFFIX}"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise PackageMissing(f"no package {digest} in {self.root}") from None


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Runs the tasks of `pool`, at most `concurrency` at a time."""

    def __init__(
        self,
        bus: Bus,
        sandbox: Sandbox,
        packages: PackageSource,
        pool: str = "default",
        concurrency: int = 1,
        *,
        trust: TrustStore,
        unseal: Unseal | None = None,
        allow_unsigned_dev: bool = False,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be 1 or more, got {concurrency}")
        self.bus = bus
        self.sandbox = sandbox
        self.packages = packages
        self.pool = pool
        self.concurrency = concurrency
        self.trust = trust
        self.unseal = unseal
        self.allow_unsigned_dev = allow_unsigned_dev
        self.worker_id = worker_id or default_worker_id()
        self.heartbeat_s = bus.settings.ack_wait / 3
        self._loaded: dict[str, LoadedPackage] = {}
        self._draining = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self.completed = 0

    def drain(self) -> None:
        """Take nothing new; `run()` returns when the tasks held are finished."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    async def run(self) -> None:
        """Take and run tasks until drained."""
        subscription = await self.bus.tasks(self.pool)
        slots = asyncio.Semaphore(self.concurrency)
        log.info("worker %s taking tasks of pool %s", self.worker_id, self.pool)
        try:
            while not self.draining:
                await slots.acquire()
                if self.draining:
                    slots.release()
                    break
                delivery = await self._take(subscription)
                if delivery is None:
                    slots.release()
                    continue
                task = asyncio.create_task(self._handle(delivery))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            await subscription.close()
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
            log.info("worker %s drained after %d tasks", self.worker_id, self.completed)

    async def _take(self, subscription: Subscription[TaskMessage]) -> Delivery[TaskMessage] | None:
        # A short pull, so a drain is noticed within _POLL_S; a pull in flight when the
        # drain comes is left to finish (cancelling it could strand a fetched task until
        # its ack wait), and what it brings is still run. The room is the free slots (the
        # one just taken included): the bus may bring that many tasks in one request, and
        # what it still holds when the subscription closes goes back to the queue.
        try:
            return await subscription.next(_POLL_S, room=self.concurrency - len(self._running))
        except BusError as exc:
            log.warning("worker %s could not take a task: %s", self.worker_id, exc)
            await asyncio.sleep(_POLL_S)
            return None

    async def _handle(self, delivery: Delivery[TaskMessage]) -> None:
        task = delivery.message
        started = time.time()
        fields = _log_fields(task)
        log.info("started %s (delivery %d)", task.msg_id, delivery.deliveries, extra=fields)
        heartbeat = _Heartbeat(delivery, self.heartbeat_s)
        try:
            outcome, unsigned = await self._execute(task)
        except Exception as exc:  # a bug here must not take the worker down with it
            log.exception("task %s failed in the worker", task.msg_id)
            outcome, unsigned = SandboxStopped("trap", f"the worker failed: {exc}"), False
        finally:
            heartbeat.stop()
        result = ResultMessage(
            task.run_id,
            task.step_id,
            task.attempt,
            self.worker_id,
            outcome,
            started_at=started,
            finished_at=time.time(),
            unsigned_dev=unsigned,
            traceparent=task.traceparent or delivery.traceparent,
        )
        try:
            await self.bus.publish_result(result)
            await delivery.ack()
        except BusError as exc:
            # Not acked: the task runs again (here or elsewhere) and its result is resent.
            log.warning("could not publish the result of %s: %s", task.msg_id, exc)
            with contextlib.suppress(BusError):
                await delivery.nak(_RESULT_RETRY_DELAY_S)
            return
        self.completed += 1
        log.info("finished %s: %s", task.msg_id, _status(outcome), extra=fields)

    async def _execute(self, task: TaskMessage) -> tuple[TaskOutcome, bool]:
        limits = task.limits or Limits()
        if task.deadline is not None:
            remaining = task.deadline - time.time()
            if remaining <= 0:
                message = "the step's deadline passed before a worker could start it"
                return SandboxStopped("timeout", message), False
            if remaining < limits.timeout_s:
                limits = dataclasses.replace(limits, timeout_s=remaining)
        loaded = self._loaded.get(task.package_digest)
        if loaded is None:
            try:
                # Reading, verifying and (the first time) compiling are blocking work.
                loaded = await asyncio.to_thread(self._load, task.package_digest)
            except PackageMissing as exc:
                return TaskRejected("package-missing", str(exc)), False
            except (PackageError, LoadError) as exc:
                return TaskRejected("package-refused", str(exc)), False
        secret_values: Mapping[str, str] = {}
        if task.secrets is not None:
            if self.unseal is None:
                message = f"worker {self.worker_id} has no key to open sealed secrets"
                return TaskRejected("secrets-unreadable", message), False
            try:
                secret_values = self.unseal(task.secrets)
            except Exception as exc:  # whatever the sealing reports, the step cannot run
                return TaskRejected("secrets-unreadable", f"{type(exc).__name__}: {exc}"), False
        grants = Grants(secrets=secret_values, network=task.network)
        manifest = loaded.package.manifest
        span_attributes: spans.Attributes = {
            spans.RUN_ID: task.run_id,
            spans.STEP: task.step_id,
            spans.ATTEMPT: task.attempt,
            spans.CONNECTOR_VERSION: str(manifest.version),
            spans.CONNECTOR_DIGEST: task.package_digest,
            spans.WORKER: self.worker_id,
        }
        # The span continues the scheduler's attempt span (the task's traceparent).
        with spans.execute_span(task.traceparent, manifest.name, span_attributes) as span:
            outcome = await self.sandbox.in_thread(
                functools.partial(self._run_if_trusted, loaded, task, grants, limits)
            )
            spans.set_outcome(span, outcome)
        if isinstance(outcome, TaskRejected):
            self._loaded.pop(task.package_digest, None)
            return outcome, False
        return outcome, loaded.package.unsigned_dev

    def _run_if_trusted(
        self, loaded: LoadedPackage, task: TaskMessage, grants: Grants, limits: Limits
    ) -> TaskOutcome:
        """On a sandbox thread: the package's trust re-checked, then the run. The check
        reads the trust store's file; on the event loop, getting the GIL back after that
        system call meant waiting behind the sandbox threads, once or twice per task."""
        revoked = self._no_longer_trusted(loaded)
        if revoked is not None:
            return TaskRejected("package-refused", revoked)
        return self.sandbox.run(
            loaded.component, config=task.config, input=task.input, grants=grants, limits=limits
        )

    def _no_longer_trusted(self, loaded: LoadedPackage) -> str | None:
        """Why a package verified earlier may not run now (its key was revoked or is no
        longer trusted for the publisher), or None. The trust store re-reads its file when
        it changes, so a revocation reaches a running worker at its next task."""
        package = loaded.package
        if package.fingerprint is None:  # an unsigned development package: nothing to revoke
            return None
        if self.trust.trusted_for(package.fingerprint, package.manifest.publisher) is not None:
            return None
        return (
            f"{package.label}: key {package.fingerprint} is no longer trusted for publisher "
            f"{package.manifest.publisher} (revoked or removed since it was loaded)"
        )

    def _load(self, digest: str) -> LoadedPackage:
        data = self.packages.read(digest)
        loaded = self.sandbox.load_package(
            data, self.trust, allow_unsigned_dev=self.allow_unsigned_dev
        )
        if loaded.package.package_sha256 != digest:
            raise PackageError(digest, f"the file has sha256 {loaded.package.package_sha256}")
        # Packages are content-addressed, so a verified one stays valid for this digest as
        # long as its key stays trusted (checked again for every task).
        self._loaded[digest] = loaded
        return loaded


def _log_fields(task: TaskMessage) -> dict[str, object]:
    """What ties the worker's lines about a task to its run, step and trace (the
    scheduler's attempt span, named by the task's traceparent)."""
    trace_id, span_id = ids_of(task.traceparent)
    return {
        "run_id": task.run_id,
        "step": task.step_id,
        "attempt": task.attempt,
        "trace_id": trace_id,
        "span_id": span_id,
    }


class _Heartbeat:
    """In-progress acks for a task every `interval` seconds while it runs. A timer, not a
    task of its own: a step that ends before the first beat (almost every one) costs a
    timer set and cancelled, not a task started, cancelled and awaited."""

    def __init__(self, delivery: Delivery[TaskMessage], interval: float) -> None:
        self._delivery = delivery
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(interval, self._beat)
        self._sending: asyncio.Task[None] | None = None

    def _beat(self) -> None:
        if self._sending is None or self._sending.done():
            self._sending = self._loop.create_task(self._send())
        self._timer = self._loop.call_later(self._interval, self._beat)

    async def _send(self) -> None:
        try:
            await self._delivery.in_progress()
        except BusError as exc:
            log.warning("heartbeat for %s failed: %s", self._delivery.message.msg_id, exc)

    def stop(self) -> None:
        self._timer.cancel()
        if self._sending is not None:
            self._sending.cancel()


def _status(outcome: TaskOutcome) -> str:
    if outcome.ok:
        return "ok"
    if isinstance(outcome, SandboxStopped):
        return f"stopped ({outcome.reason})"
    if isinstance(outcome, TaskRejected):
        return f"rejected ({outcome.reason})"
    return f"failed ({outcome.failure.kind})"
