"""The one place domain errors become gRPC statuses, with details a client can act on
(google.rpc messages in the `grpc-status-details-bin` trailer; docs/api.md has the table).

- WorkflowInvalid: INVALID_ARGUMENT, BadRequest with one field violation per problem
  (field `steps.<id>.<field>`, description `file:line:col: message`).
- RunInputInvalid: INVALID_ARGUMENT, BadRequest on `input_json`, one per problem.
- bad JSON, a bad page token: INVALID_ARGUMENT, BadRequest naming the request field.
- an unknown run, workflow or version: NOT_FOUND with ResourceInfo.
- approving a step not waiting, cancelling a finished run: FAILED_PRECONDITION with
  PreconditionFailure (type, subject, description).
- a run id that exists: ALREADY_EXISTS; a concurrent write won: ABORTED (call again).

Servicers wrap each call body in `async with domain_errors(context):`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from google.rpc.status_pb2 import Status as RpcStatus
from grpc_status import rpc_status

from flowforge.control.scheduler import CatalogError, RunInputInvalid, SchedulerError
from flowforge.control.storage import (
    ConcurrencyConflict,
    DuplicateRun,
    RunFinished,
    UnknownRun,
    UnknownVersion,
)
from flowforge.control.workflow import Problem, WorkflowInvalid

Context = grpc.aio.ServicerContext[Any, Any]


class ApiError(Exception):
    """An error a servicer raises on purpose: its status, message and detail messages."""

    def __init__(self, code: grpc.StatusCode, message: str, *details: Message) -> None:
        self.code = code
        self.message = message
        self.details = details
        super().__init__(message)


def field_violations(violations: Iterable[tuple[str, str]]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations
        ]
    )


def invalid_argument(field: str, description: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field}: {description}",
        field_violations([(field, description)]),
    )


def not_found(kind: str, name: str, message: str | None = None) -> ApiError:
    text = message or f"no {kind} {name!r}"
    info = error_details_pb2.ResourceInfo(resource_type=kind, resource_name=name, description=text)
    return ApiError(grpc.StatusCode.NOT_FOUND, text, info)


def failed_precondition(kind: str, subject: str, description: str) -> ApiError:
    failure = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=kind, subject=subject, description=description
            )
        ]
    )
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, description, failure)


def parse_json(field: str, text: str, default: Any) -> Any:
    """A JSON field of a request (empty = `default`); INVALID_ARGUMENT when it is not JSON."""
    if not text.strip():
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise invalid_argument(field, f"not valid JSON: {exc}") from None


def _problem_field(problem: Problem) -> str:
    if problem.step is not None:
        return f"steps.{problem.step}" + (f".{problem.field}" if problem.field else "")
    return problem.field or ""


def _problem_text(problem: Problem) -> str:
    where = problem.file if problem.position is None else f"{problem.file}:{problem.position}"
    return f"{where}: {problem.message}"


def as_api_error(exc: Exception) -> ApiError:
    """The status a domain error maps to (see the table above)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, WorkflowInvalid):
        violations = [(_problem_field(p), _problem_text(p)) for p in exc.problems]
        return ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc), field_violations(violations))
    if isinstance(exc, RunInputInvalid):
        violations = [("input_json", problem) for problem in exc.problems]
        return ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc), field_violations(violations))
    if isinstance(exc, UnknownRun):
        return not_found("run", exc.run_id)
    if isinstance(exc, UnknownVersion):
        return not_found("workflow version", exc.version)
    if isinstance(exc, DuplicateRun):
        info = error_details_pb2.ResourceInfo(resource_type="run", resource_name=exc.run_id)
        return ApiError(grpc.StatusCode.ALREADY_EXISTS, str(exc), info)
    if isinstance(exc, RunFinished):
        return failed_precondition("run-finished", f"runs/{exc.run_id}", str(exc))
    if isinstance(exc, ConcurrencyConflict):
        return ApiError(grpc.StatusCode.ABORTED, f"{exc}; try again")
    if isinstance(exc, CatalogError):
        return failed_precondition("version-unavailable", "version", str(exc))
    if isinstance(exc, SchedulerError):
        return failed_precondition("scheduler", "run", str(exc))
    if isinstance(exc, ValueError):
        return ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    raise TypeError(f"no status for {type(exc).__name__}") from exc


DOMAIN_ERRORS = (
    ApiError,
    WorkflowInvalid,
    UnknownRun,
    UnknownVersion,
    DuplicateRun,
    RunFinished,
    ConcurrencyConflict,
    CatalogError,
    SchedulerError,
    ValueError,
)


def rich_status(error: ApiError) -> grpc.Status:
    """The grpc.Status carrying `error`'s details as a google.rpc.Status."""
    packed = []
    for detail in error.details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    code: int = error.code.value[0]
    status = RpcStatus(code=code, message=error.message, details=packed)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def abort(context: Context, error: ApiError) -> NoReturn:
    await context.abort_with_status(rich_status(error))


@asynccontextmanager
async def domain_errors(context: Context) -> AsyncIterator[None]:
    """Turn a domain error raised inside into the call's status (aborting it)."""
    try:
        yield
    except DOMAIN_ERRORS as exc:
        await abort(context, as_api_error(exc))


__all__ = [
    "DOMAIN_ERRORS",
    "ApiError",
    "Context",
    "abort",
    "as_api_error",
    "domain_errors",
    "failed_precondition",
    "field_violations",
    "invalid_argument",
    "not_found",
    "parse_json",
    "rich_status",
]
