"""`configure()` from the standard OTEL_* variables: off by default, an OTLP endpoint alone
turns OTLP on, exporter lists, the SDK switch, bad names refused with the variable named;
and a console exporter really exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flowforge.runtime import telemetry
from flowforge.runtime.telemetry import TelemetryConfigError, TelemetrySettings
from tests.cli import run_cli


def settings(**env: str) -> TelemetrySettings:
    return TelemetrySettings.from_environ("flowforge-test", env)


def test_nothing_is_exported_unless_asked() -> None:
    assert settings() == TelemetrySettings("flowforge-test", (), ())
    assert settings(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none") == settings()


def test_an_endpoint_alone_means_otlp_and_lists_are_read() -> None:
    found = settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317")
    assert (found.traces, found.metrics) == (("otlp",), ("otlp",))
    found = settings(
        OTEL_TRACES_EXPORTER="Console, otlp,none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317",
        OTEL_SERVICE_NAME="ff-prod",
    )
    assert found == TelemetrySettings("ff-prod", ("console", "otlp"), ())
    found = settings(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector:4317/v1/traces")
    assert (found.traces, found.metrics) == (("otlp",), ())


def test_the_sdk_switch_turns_everything_off() -> None:
    assert settings(OTEL_SDK_DISABLED="true", OTEL_TRACES_EXPORTER="console").traces == ()


def test_an_unknown_exporter_is_refused_naming_the_variable() -> None:
    with pytest.raises(TelemetryConfigError, match=r"OTEL_TRACES_EXPORTER='zipkin'.*otlp"):
        settings(OTEL_TRACES_EXPORTER="zipkin")


CONSOLE_SCRIPT = """
from flowforge.runtime import telemetry
telemetry.configure("flowforge-test")
with telemetry.tracer().start_as_current_span("hello"):
    pass
"""


def test_a_console_exporter_exports_the_spans_at_exit() -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "ff-console"}
    done = subprocess.run(
        [sys.executable, "-c", CONSOLE_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["name"] == "hello"
    assert exported["resource"]["attributes"]["service.name"] == "ff-console"


def test_configure_with_nothing_set_leaves_both_off() -> None:
    telemetry.configure("flowforge-test", {})
    assert telemetry.tracer() is None and telemetry.meter() is None


def test_the_worker_refuses_a_bad_variable_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    result = run_cli("worker", "--nats", "nats://127.0.0.1:1")
    assert result.code == 2
    assert "OTEL_METRICS_EXPORTER='prometheus': unknown exporter prometheus" in result.stderr
