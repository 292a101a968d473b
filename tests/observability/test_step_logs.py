"""Step logs written by the scheduler: the connector's lines from each result and the
scheduler's own (retry scheduled, step failed), with run, step, attempt and the attempt
span's trace ids, one append per decision; and no secret value anywhere a run leaves
a trace (spans, step logs, events, stdout/stderr)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import wasmtime
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowforge.control.secrets import SecretBox, SecretStore, load_master_key
from flowforge.control.storage import RunStatus
from flowforge.runtime.telemetry import JsonFormatter
from tests.control.scheduler.conftest import OpenEngine, Packages, manifest
from tests.fixtures import fixture_path

from .secret_grep import SecretGrep

LOGS = """
name: logs
steps:
  say:
    uses: acme/guest@^1
    input: {action: log, message: hello from the guest, level: warn}
  call:
    uses: acme/guest@^1
    needs: [say]
    input: {action: fail, kind: unavailable, message: try later}
    retry: {max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 1, retry_on: [unavailable]}
"""


async def test_connector_and_scheduler_lines_are_stored_with_their_trace_ids(
    packages: Packages, open_engine: OpenEngine, spans: InMemorySpanExporter
) -> None:
    engine = await open_engine()
    result = await engine.run(packages.workflow(LOGS), {})
    assert result.state.status is RunStatus.FAILED
    lines = await engine.storage.logs.read(result.run_id)
    assert [(r.seq, r.step, r.attempt, r.source, r.level) for r in lines] == [
        (1, "say", 1, "connector", "warn"),
        (2, "call", 1, "scheduler", "warn"),
        (3, "call", 2, "scheduler", "error"),
    ]
    said = [r for r in lines if r.step == "say" and r.level == "warn"]
    assert [r.message for r in said] == ["hello from the guest"]
    retry, failed = [r for r in lines if r.step == "call"]
    assert retry.message.startswith("attempt 1 failed (unavailable: try later); retry at ")
    assert failed.message == "step call failed after 2 attempts: unavailable: try later"

    finished = spans.get_finished_spans()
    for record in [*said, retry, failed]:
        (span,) = [
            s
            for s in finished
            if s.name == f"step {record.step}"
            and (s.attributes or {}).get("flowforge.attempt") == record.attempt
        ]
        assert span.context is not None
        assert record.trace_id == f"{span.context.trace_id:032x}"
        assert record.span_id == f"{span.context.span_id:016x}"
    assert await engine.storage.logs.read(result.run_id, step="say") == [
        r for r in lines if r.step == "say"
    ]


async def test_with_tracing_off_lines_are_stored_without_trace_ids(
    packages: Packages, open_engine: OpenEngine
) -> None:
    engine = await open_engine()
    result = await engine.run(packages.workflow(LOGS), {})
    lines = await engine.storage.logs.read(result.run_id)
    assert any(r.message == "hello from the guest" for r in lines)
    assert all(r.trace_id is None and r.span_id is None for r in lines)
    events = await engine.storage.events.read(result.run_id)
    assert "traceparent" not in events[0].data


SECRET = "s3cr3t-value-42"
# returns_it reads the secret and returns it; logs_it (secret.wat) logs it, then returns
# it as bare text, which is not JSON: the step fails, and its error goes everywhere too.
LEAKY = """
name: leaky
steps:
  returns_it:
    uses: acme/guest@^1
    input: {action: secret, name: token}
    secrets: {token: api-token}
  logs_it:
    uses: acme/secret@^1
    needs: [returns_it]
    input: token
    secrets: {token: api-token}
"""


@pytest.fixture
def json_logs(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The process's log lines as JSON on (the captured) stderr, as `--log-format json`
    sets them up."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(saved)


async def test_no_secret_value_in_spans_logs_events_or_output(
    packages: Packages,
    open_engine: OpenEngine,
    spans: InMemorySpanExporter,
    json_logs: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    component = bytes(wasmtime.wat2wasm(fixture_path("secret").read_text()))
    packages.add(manifest("acme/secret", capabilities={"secrets": ["token"]}), component)
    key = load_master_key()  # creates the master key, so the engine has a secret store
    engine = await open_engine()
    await SecretStore(engine.storage.db, SecretBox(key)).set("default", "api-token", SECRET)

    result = await engine.run(packages.workflow(LEAKY), {})
    assert result.state.status is RunStatus.FAILED
    assert result.state.steps["returns_it"].output == {"value": "***"}
    assert result.state.error is not None and result.state.error["step"] == "logs_it"
    lines = await engine.storage.logs.read(result.run_id)
    # The connector did log the value: the line is there, masked by the sandbox.
    logged = [r.message for r in lines if r.step == "logs_it" and r.source == "connector"]
    assert logged and all("***" in message for message in logged)

    grep = SecretGrep(SECRET)
    grep.spans(spans.get_finished_spans())
    grep.log_records(lines)
    grep.events(await engine.storage.events.read(result.run_id))
    captured = capfd.readouterr()
    grep.text("stdout", captured.out)
    grep.text("stderr", captured.err)
    assert spans.get_finished_spans() and lines and captured.err
    grep.assert_absent()
