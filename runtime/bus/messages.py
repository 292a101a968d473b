"""What travels on the bus: tasks to workers, their results back, dead letters, run events.

Every message is a frozen dataclass with `encode() -> bytes` and `decode(bytes)`: compact
canonical JSON carrying a version field `v`, so a newer sender is refused with a clear
error instead of being misread. The in-process bus hands the objects over as they are; only
the NATS bus pays for the bytes.

Secrets travel sealed (`TaskMessage.secrets` is the opaque text `flowforge.runtime.sealing`
produces); the bus never sees them in clear.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, get_args

from ..canonical import canonical_json
from ..limits import Limits
from ..outcome import (
    STOP_REASONS,
    ConnectorFailed,
    LogLine,
    LogSource,
    Outcome,
    SandboxStopped,
    Stats,
    Success,
)
from ..values import ERROR_KINDS, LOG_LEVELS, Failure

VERSION: Final = 1
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_DEFAULT_LIMITS: Final = dataclasses.asdict(Limits())
_LOG_SOURCES: Final[tuple[LogSource, ...]] = get_args(LogSource)

_S = TypeVar("_S", bound=str)

RejectReason = Literal["package-missing", "package-refused", "secrets-unreadable"]
REJECT_REASONS: Final[tuple[RejectReason, ...]] = get_args(RejectReason)


class MessageError(ValueError):
    """Bytes that are not a message this version understands; says which field and why."""


def check_token(what: str, value: str) -> str:
    """Run, step and pool names become NATS subject tokens and parts of `run/step/attempt`
    message ids, so they are limited to letters, digits, `_` and `-`."""
    if not _TOKEN.fullmatch(value):
        raise MessageError(
            f"{what} {value!r} must be 1-128 letters, digits, '_' or '-' "
            "(it is used in bus subjects and message ids)"
        )
    return value


def message_id(run_id: str, step_id: str, attempt: int) -> str:
    """`run/step/attempt`: the id that makes publishing a task (or its result) idempotent."""
    return f"{run_id}/{step_id}/{attempt}"


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One attempt of one step, for a worker of `pool` to run.

    `config` and `input` are JSON text, handed to the connector as they are. `network` is
    the step's effective host patterns; `secrets` the sealed secret grants (or None);
    `limits` None means the runtime's defaults. `deadline` is wall-clock Unix seconds by
    which the step must be done (the worker shortens the timeout to meet it).
    `traceparent` is the W3C trace context of the dispatch.
    """

    run_id: str
    step_id: str
    attempt: int
    pool: str
    package_digest: str
    config: str = "{}"
    input: str = "{}"
    network: tuple[str, ...] = ()
    secrets: str | None = None
    limits: Limits | None = None
    deadline: float | None = None
    traceparent: str | None = None

    def __post_init__(self) -> None:
        check_token("run id", self.run_id)
        check_token("step id", self.step_id)
        check_token("pool", self.pool)
        if self.attempt < 1:
            raise MessageError(f"attempt must be 1 or more, got {self.attempt}")

    @property
    def msg_id(self) -> str:
        return message_id(self.run_id, self.step_id, self.attempt)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": VERSION,
            "run": self.run_id,
            "step": self.step_id,
            "attempt": self.attempt,
            "pool": self.pool,
            "package": self.package_digest,
            "config": self.config,
            "input": self.input,
        }
        # Optional fields are left out when empty: most tasks carry none of them.
        if self.network:
            doc["network"] = list(self.network)
        if self.secrets is not None:
            doc["secrets"] = self.secrets
        if self.limits is not None:
            doc["limits"] = _limits_json(self.limits)
        if self.deadline is not None:
            doc["deadline"] = self.deadline
        if self.traceparent is not None:
            doc["traceparent"] = self.traceparent
        return doc

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, doc: Any) -> TaskMessage:
        r = _Reader("task", doc)
        limits = r.get("limits", dict, None)
        return cls(
            run_id=r.text("run"),
            step_id=r.text("step"),
            attempt=r.integer("attempt"),
            pool=r.text("pool"),
            package_digest=r.text("package"),
            config=r.text("config"),
            input=r.text("input"),
            network=tuple(r.str_list("network")),
            secrets=r.get("secrets", str, None),
            limits=None if limits is None else _limits_from(limits),
            deadline=r.number("deadline"),
            traceparent=r.get("traceparent", str, None),
        )

    @classmethod
    def decode(cls, data: bytes) -> TaskMessage:
        return cls.from_json(_loads("task", data))


@dataclass(frozen=True, slots=True)
class TaskRejected:
    """The worker would not run the task: its package is missing or refused, or its sealed
    secrets could not be opened. The connector never ran."""

    reason: RejectReason
    message: str
    logs: list[LogLine] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    ok: Literal[False] = False


TaskOutcome = Outcome | TaskRejected


@dataclass(frozen=True, slots=True)
class ResultMessage:
    """What became of one task: the sandbox's outcome (with its logs and stats), or the
    worker's refusal, and which worker ran it. `unsigned_dev` says the package ran
    unsigned under the development flag, so the run record can say so."""

    run_id: str
    step_id: str
    attempt: int
    worker_id: str
    outcome: TaskOutcome
    started_at: float = 0.0
    finished_at: float = 0.0
    unsigned_dev: bool = False
    traceparent: str | None = None

    @property
    def msg_id(self) -> str:
        return message_id(self.run_id, self.step_id, self.attempt)

    def to_json(self) -> dict[str, Any]:
        outcome = self.outcome
        doc: dict[str, Any] = {
            "v": VERSION,
            "run": self.run_id,
            "step": self.step_id,
            "attempt": self.attempt,
            "worker": self.worker_id,
            "outcome": _outcome_json(outcome),
            "logs": [[line.level, line.message, line.source] for line in outcome.logs],
            "stats": dataclasses.asdict(outcome.stats),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.unsigned_dev:
            doc["unsigned_dev"] = True
        if self.traceparent is not None:
            doc["traceparent"] = self.traceparent
        return doc

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, doc: Any) -> ResultMessage:
        r = _Reader("result", doc)
        logs = [_log_line(item) for item in r.get("logs", list, [])]
        stats = _stats(r.get("stats", dict, {}))
        return cls(
            run_id=r.text("run"),
            step_id=r.text("step"),
            attempt=r.integer("attempt"),
            worker_id=r.text("worker"),
            outcome=_outcome_from(r.get("outcome", dict), logs, stats),
            started_at=r.number("started_at") or 0.0,
            finished_at=r.number("finished_at") or 0.0,
            unsigned_dev=r.get("unsigned_dev", bool, False),
            traceparent=r.get("traceparent", str, None),
        )

    @classmethod
    def decode(cls, data: bytes) -> ResultMessage:
        return cls.from_json(_loads("result", data))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task the bus gave up on: delivered `deliveries` times without an ack, or
    terminated by its consumer. `msg_id` is `run/step/attempt`; `task` is None only when
    the payload itself could not be decoded (then `reason` says why)."""

    pool: str
    msg_id: str
    reason: str
    deliveries: int
    at: float
    task: TaskMessage | None = None

    @property
    def run_id(self) -> str:
        return self.msg_id.split("/")[0]

    @property
    def step_id(self) -> str:
        parts = self.msg_id.split("/")
        return parts[1] if len(parts) > 1 else ""

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "v": VERSION,
            "pool": self.pool,
            "id": self.msg_id,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "at": self.at,
        }
        if self.task is not None:
            doc["task"] = self.task.to_json()
        return canonical_json(doc)

    @classmethod
    def decode(cls, data: bytes) -> DeadLetter:
        r = _Reader("dead letter", _loads("dead letter", data))
        task = r.get("task", dict, None)
        return cls(
            pool=r.text("pool"),
            msg_id=r.text("id"),
            reason=r.text("reason"),
            deliveries=r.integer("deliveries"),
            at=r.number("at") or 0.0,
            task=None if task is None else TaskMessage.from_json(task),
        )


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One entry of a run's history as watchers see it: `seq` is the storage's sequence
    number (1, 2, ... per run), `at` wall-clock Unix seconds."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: float

    def __post_init__(self) -> None:
        check_token("run id", self.run_id)

    @property
    def msg_id(self) -> str:
        return f"{self.run_id}/{self.seq}"

    def encode(self) -> bytes:
        return canonical_json(
            {
                "v": VERSION,
                "run": self.run_id,
                "seq": self.seq,
                "type": self.type,
                "data": self.data,
                "at": self.at,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> RunEvent:
        r = _Reader("event", _loads("event", data))
        return cls(
            run_id=r.text("run"),
            seq=r.integer("seq"),
            type=r.text("type"),
            data=r.get("data", dict),
            at=r.number("at") or 0.0,
        )


# -- encoding helpers ---------------------------------------------------------------------


def _loads(what: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"{what} message is not JSON: {exc}") from None


_MISSING: Any = object()


class _Reader:
    """Typed field access that names the message and the field in every error."""

    def __init__(self, what: str, doc: Any) -> None:
        if not isinstance(doc, dict):
            raise MessageError(f"{what} message must be a JSON object")
        version = doc.get("v")
        if version != VERSION:
            raise MessageError(
                f"{what} message has version {version!r}; this FlowForge reads version "
                f"{VERSION} (upgrade the older side)"
            )
        self.what = what
        self.doc: dict[str, Any] = doc

    def get(self, key: str, kind: type[Any], default: Any = _MISSING) -> Any:
        value = self.doc.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise MessageError(f"{self.what} message has no {key!r}")
            return default
        # bool is an int in Python; a field typed int must not accept true/false.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise MessageError(f"{self.what} message field {key!r} must be {kind.__name__}")
        return value

    def text(self, key: str) -> str:
        value: str = self.get(key, str)
        return value

    def integer(self, key: str) -> int:
        value: int = self.get(key, int)
        return value

    def number(self, key: str) -> float | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MessageError(f"{self.what} message field {key!r} must be a number")
        return float(value)

    def str_list(self, key: str) -> list[str]:
        items: list[Any] = self.get(key, list, [])
        if not all(isinstance(item, str) for item in items):
            raise MessageError(f"{self.what} message field {key!r} must be a list of strings")
        return items


def _limits_json(limits: Limits) -> dict[str, Any]:
    # Only what differs from the defaults: most steps run with them.
    values = dataclasses.asdict(limits)
    return {k: v for k, v in values.items() if v != _DEFAULT_LIMITS[k]}


def _limits_from(doc: dict[str, Any]) -> Limits:
    unknown = set(doc) - set(_DEFAULT_LIMITS)
    if unknown:
        raise MessageError(f"task message limits has unknown fields: {', '.join(sorted(unknown))}")
    try:
        return Limits(**doc)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"task message limits: {exc}") from None


def _outcome_json(outcome: TaskOutcome) -> dict[str, Any]:
    if isinstance(outcome, Success):
        return {"status": "ok", "output": outcome.output}
    if isinstance(outcome, ConnectorFailed):
        failure = outcome.failure
        doc: dict[str, Any] = {
            "status": "failed",
            "kind": failure.kind,
            "message": failure.message,
        }
        if failure.retry_after_ms is not None:
            doc["retry_after_ms"] = failure.retry_after_ms
        return doc
    if isinstance(outcome, SandboxStopped):
        return {"status": "stopped", "reason": outcome.reason, "message": outcome.message}
    return {"status": "rejected", "reason": outcome.reason, "message": outcome.message}


def _outcome_from(doc: dict[str, Any], logs: list[LogLine], stats: Stats) -> TaskOutcome:
    r = _Reader("result", {"v": VERSION, **doc})
    status = r.text("status")
    if status == "ok":
        return Success(r.text("output"), logs, stats)
    if status == "failed":
        kind = _member("failure kind", r.text("kind"), ERROR_KINDS)
        retry = r.get("retry_after_ms", int, None)
        return ConnectorFailed(Failure(kind, r.text("message"), retry), logs, stats)
    if status == "stopped":
        reason = _member("stop reason", r.text("reason"), STOP_REASONS)
        return SandboxStopped(reason, r.text("message"), logs, stats)
    if status == "rejected":
        rejected = _member("reject reason", r.text("reason"), REJECT_REASONS)
        return TaskRejected(rejected, r.text("message"), logs, stats)
    raise MessageError(f"result message has an unknown outcome status {status!r}")


def _member(what: str, value: str, allowed: tuple[_S, ...]) -> _S:
    for candidate in allowed:
        if candidate == value:
            return candidate
    raise MessageError(f"result message has an unknown {what} {value!r}")


def _log_line(item: Any) -> LogLine:
    if not (isinstance(item, list) and len(item) == 3 and all(isinstance(x, str) for x in item)):
        raise MessageError("result message logs must be [level, message, source] triples")
    level = _member("log level", item[0], LOG_LEVELS)
    source = _member("log source", item[2], _LOG_SOURCES)
    return LogLine(level, item[1], source)


def _stats(doc: dict[str, Any]) -> Stats:
    try:
        return Stats(**doc)
    except TypeError as exc:
        raise MessageError(f"result message stats: {exc}") from None


__all__ = [
    "REJECT_REASONS",
    "VERSION",
    "DeadLetter",
    "MessageError",
    "RejectReason",
    "ResultMessage",
    "RunEvent",
    "TaskMessage",
    "TaskOutcome",
    "TaskRejected",
    "check_token",
    "message_id",
]
