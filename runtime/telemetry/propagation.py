"""W3C trace context (`traceparent`, `tracestate`) in and out of plain string carriers:
NATS headers, task messages, gRPC metadata, the run-started event.

One propagator, the standard `TraceContextTextMapPropagator`, so any other W3C-speaking
process (an OpenTelemetry-instrumented client, a collector) reads what we write.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Final

from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    format_span_id,
    format_trace_id,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT: Final = "traceparent"
_PROPAGATOR: Final = TraceContextTextMapPropagator()


def inject(carrier: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the trace context of `context` (default: the current one) into `carrier`;
    nothing is written when there is no valid span."""
    _PROPAGATOR.inject(carrier, context)


def extract(carrier: Mapping[str, str], context: Context | None = None) -> Context:
    """A context whose current span is the (non-recording) remote parent named by the
    carrier, on top of `context`; unchanged when the carrier holds none or a malformed one."""
    return _PROPAGATOR.extract(carrier, context)


def traceparent_of(span: Span) -> str | None:
    """The `traceparent` header value naming `span`, or None for an invalid span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def remote_parent(traceparent: str | None) -> Context | None:
    """A context whose parent is the span a stored `traceparent` names (e.g. the run
    span of a run started by a scheduler that has since restarted), or None."""
    if not traceparent:
        return None
    context = extract({TRACEPARENT: traceparent})
    if not get_current_span(context).get_span_context().is_valid:
        return None
    return context


def ids_of(traceparent: str | None) -> tuple[str | None, str | None]:
    """(trace id, span id) as lowercase hex from a `traceparent`, or (None, None)."""
    context = remote_parent(traceparent)
    if context is None:
        return None, None
    span = get_current_span(context).get_span_context()
    return format_trace_id(span.trace_id), format_span_id(span.span_id)


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span, or (None, None) outside any."""
    span = get_current_span().get_span_context()
    if not span.is_valid:
        return None, None
    return format_trace_id(span.trace_id), format_span_id(span.span_id)


__all__ = [
    "TRACEPARENT",
    "current_ids",
    "extract",
    "ids_of",
    "inject",
    "remote_parent",
    "traceparent_of",
]
