"""Turning telemetry on: `configure()` reads the standard OTEL_* variables once per process
(the server, the worker and `flowforge run` call it); `install()` hands in providers
directly (tests, benchmarks).

Off by default, and then nearly free: the code that makes spans and metrics asks
`tracer()` / `meter()` first and does nothing when they are None, so a run without an
exporter pays one attribute read per hook, not the OpenTelemetry API's no-op objects.
The SDK is imported only when something is exported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

INSTRUMENTATION: Final = "flowforge"
EXPORTERS: Final = ("otlp", "console", "none")

log = logging.getLogger("flowforge.telemetry")


class TelemetryConfigError(ValueError):
    """An OTEL_* variable holds something this process cannot use; says which and how."""


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What the environment asks for: exporter names per signal (empty: off)."""

    service_name: str
    traces: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @classmethod
    def from_environ(
        cls, default_service: str, environ: Mapping[str, str] | None = None
    ) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(default_service)
        # An OTLP endpoint on its own means "send OTLP there": the usual way to turn an
        # agent on. Without either variable nothing is exported (unlike the SDK's own
        # default of otlp), so a laptop run never waits on a collector that is not there.
        endpoint = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        traces = _exporters(
            env,
            "OTEL_TRACES_EXPORTER",
            endpoint or bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
        )
        metrics = _exporters(
            env,
            "OTEL_METRICS_EXPORTER",
            endpoint or bool(env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")),
        )
        return cls(env.get("OTEL_SERVICE_NAME") or default_service, traces, metrics)


def _exporters(env: Mapping[str, str], variable: str, endpoint_set: bool) -> tuple[str, ...]:
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return ("otlp",) if endpoint_set else ()
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TelemetryConfigError(
            f"{variable}={raw!r}: unknown exporter {', '.join(unknown)}; "
            f"use {', '.join(EXPORTERS)} (comma-separated)"
        )
    return tuple(n for n in names if n != "none")


@dataclass(slots=True)
class _State:
    tracer: Tracer | None = None
    meter: Meter | None = None
    shutdowns: list[Callable[[], object]] = field(default_factory=list)
    on_meter: list[Callable[[Meter], None]] = field(default_factory=list)


_state = _State()


def tracer() -> Tracer | None:
    """The tracer FlowForge's spans come from, or None when tracing is off."""
    return _state.tracer


def meter() -> Meter | None:
    """The meter FlowForge's instruments come from, or None when metrics are off."""
    return _state.meter


def on_meter(callback: Callable[[Meter], None]) -> None:
    """Call `callback(meter)` now if metrics are on, and whenever a meter is installed
    (instruments are created once per meter)."""
    _state.on_meter.append(callback)
    if _state.meter is not None:
        callback(_state.meter)


def install(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Use these providers from now on (None turns that signal off)."""
    _state.tracer = (
        tracer_provider.get_tracer(INSTRUMENTATION) if tracer_provider is not None else None
    )
    _state.meter = meter_provider.get_meter(INSTRUMENTATION) if meter_provider is not None else None
    if _state.meter is not None:
        for callback in _state.on_meter:
            callback(_state.meter)


def configure(
    service_name: str = "flowforge", environ: Mapping[str, str] | None = None
) -> TelemetrySettings:
    """Set up tracing and metrics as the OTEL_* variables say; returns what was set up.

    OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: otlp, console or none (comma lists);
    OTEL_EXPORTER_OTLP_ENDPOINT alone means otlp. OTEL_SERVICE_NAME (else
    `service_name`) and OTEL_RESOURCE_ATTRIBUTES name the process; the exporters and the
    batch processor read their own variables (endpoint, headers, intervals).
    """
    settings = TelemetrySettings.from_environ(service_name, environ)
    shutdown()
    if not settings.traces and not settings.metrics:
        install(None, None)
        return settings
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create({SERVICE_NAME: settings.service_name})
    tracer_provider = _tracer_provider(settings.traces, resource) if settings.traces else None
    meter_provider = _meter_provider(settings.metrics, resource) if settings.metrics else None
    # Also the process-wide providers, so libraries that trace on their own join the
    # same traces. They can be set once; later calls keep the first (and say so).
    if tracer_provider is not None:
        otel_trace.set_tracer_provider(tracer_provider)
        _state.shutdowns.append(tracer_provider.shutdown)
    if meter_provider is not None:
        otel_metrics.set_meter_provider(meter_provider)
        _state.shutdowns.append(meter_provider.shutdown)
    install(tracer_provider, meter_provider)
    log.info(
        "telemetry on: service %s, traces %s, metrics %s",
        settings.service_name,
        ",".join(settings.traces) or "off",
        ",".join(settings.metrics) or "off",
    )
    return settings


def shutdown() -> None:
    """Flush and stop what `configure` set up (also done at interpreter exit)."""
    for stop in _state.shutdowns:
        try:
            stop()
        except Exception:  # a collector gone away must not fail the process's exit
            log.warning("telemetry shutdown failed", exc_info=True)
    _state.shutdowns.clear()
    install(None, None)


def _tracer_provider(names: tuple[str, ...], resource: Resource) -> SdkTracerProvider:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = SdkTracerProvider(resource=resource)
    for name in names:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _meter_provider(names: tuple[str, ...], resource: Resource) -> SdkMeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )

    readers = []
    for name in names:
        exporter: MetricExporter
        if name == "console":
            exporter = ConsoleMetricExporter()
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )

            exporter = OTLPMetricExporter()
        readers.append(PeriodicExportingMetricReader(exporter))
    return SdkMeterProvider(resource=resource, metric_readers=readers)
