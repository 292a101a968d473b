"""Observability: OpenTelemetry traces and metrics, W3C trace context, JSON log lines.

    from flowforge.runtime import telemetry

    telemetry.configure("flowforge-worker")   # from OTEL_*; off (and nearly free) by default
    telemetry.setup_logging("json")           # --log-format json

The scheduler opens the run and attempt spans through `RunTracing`, the worker its
`execute_span`, and gRPC servers add `telemetry.grpc.TraceContextInterceptor()`.
Imports nothing else of FlowForge's.
"""

from __future__ import annotations

from .jsonlog import LOG_FORMATS, JsonFormatter, LogFormat, setup_logging
from .propagation import (
    TRACEPARENT,
    current_ids,
    extract,
    ids_of,
    inject,
    remote_parent,
    traceparent_of,
)
from .setup import (
    TelemetryConfigError,
    TelemetrySettings,
    configure,
    install,
    meter,
    shutdown,
    tracer,
)
from .spans import RunTracing, execute_span

__all__ = [
    "LOG_FORMATS",
    "TRACEPARENT",
    "JsonFormatter",
    "LogFormat",
    "RunTracing",
    "TelemetryConfigError",
    "TelemetrySettings",
    "configure",
    "current_ids",
    "execute_span",
    "extract",
    "ids_of",
    "inject",
    "install",
    "meter",
    "remote_parent",
    "setup_logging",
    "shutdown",
    "traceparent_of",
    "tracer",
]
