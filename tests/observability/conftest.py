"""Fixtures for the observability tests: the storage fixtures of tests/control/storage
(SQLite and PostgreSQL), the scheduler's workspace of signed packages, the NATS stream
prefix of the bus tests, and in-memory span and metric collectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowforge.runtime import telemetry
from tests.control.scheduler.conftest import (
    config_dir,
    echo_component,
    open_engine,
    packages,
    spin_component,
)
from tests.control.storage.conftest import db_url, storage, version
from tests.runtime.bus.conftest import nats_prefix, spin_digest, workspace


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.install(provider)
    yield exporter
    telemetry.install(None, None)
    provider.shutdown()


@pytest.fixture
def metric_reader() -> Iterator[InMemoryMetricReader]:
    """Metrics on for the test, read on demand."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    telemetry.install(None, provider)
    yield reader
    telemetry.install(None, None)
    provider.shutdown()


__all__ = [
    "config_dir",
    "db_url",
    "echo_component",
    "metric_reader",
    "nats_prefix",
    "open_engine",
    "packages",
    "spans",
    "spin_component",
    "spin_digest",
    "storage",
    "version",
    "workspace",
]
