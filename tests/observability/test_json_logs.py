"""JSON log lines: one schema, run/step/attempt and trace ids on every line; from the
formatter itself, and from a `flowforge worker --log-format json` process running a task
that carries a traceparent over NATS."""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowforge.runtime import telemetry
from flowforge.runtime.bus import BusSettings, TaskMessage
from flowforge.runtime.telemetry import JsonFormatter
from tests.runtime.bus.conftest import NATS_URL, SETTINGS, Workspace, open_bus

SCHEMA = {"ts", "level", "logger", "msg", "run_id", "step", "attempt", "trace_id", "span_id"}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
# Long enough that a busy machine's first compile does not get the task redelivered.
LONG = BusSettings(ack_wait=30.0, max_deliver=SETTINGS.max_deliver, duplicate_window=60.0)


def record(message: str, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    made = logging.getLogger("flowforge.test").makeRecord(
        "flowforge.test", level, __file__, 1, message, (), None, extra=extra
    )
    return made


def test_a_line_has_the_schema_and_the_extra_fields() -> None:
    line = JsonFormatter().format(
        record("finished r1/a/1: ok", logging.WARNING, run_id="r1", step="a", attempt=1, pool="p")
    )
    doc = json.loads(line)
    assert set(doc) == SCHEMA | {"pool"}
    assert doc["level"] == "warn" and doc["logger"] == "flowforge.test"
    assert doc["msg"] == "finished r1/a/1: ok"
    assert (doc["run_id"], doc["step"], doc["attempt"], doc["pool"]) == ("r1", "a", 1, "p")
    assert doc["trace_id"] is None and doc["span_id"] is None
    assert doc["ts"].endswith("+00:00")


def test_inside_a_span_the_line_carries_its_trace_ids(spans: InMemorySpanExporter) -> None:
    found = telemetry.tracer()
    assert found is not None
    with found.start_as_current_span("work") as span:
        doc = json.loads(JsonFormatter().format(record("inside")))
    context = span.get_span_context()
    assert doc["trace_id"] == f"{context.trace_id:032x}"
    assert doc["span_id"] == f"{context.span_id:016x}"


def test_an_exception_is_one_field_of_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        made = record("failed")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exc"]


def test_setup_logging_json_writes_json_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        telemetry.setup_logging("json")
        logging.getLogger("flowforge.scheduler").info(
            "run %s resumed", "r9", extra={"run_id": "r9"}
        )
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    (line,) = capsys.readouterr().err.splitlines()
    doc = json.loads(line)
    assert doc["msg"] == "run r9 resumed" and doc["run_id"] == "r9"
    assert doc["logger"] == "flowforge.scheduler"


class JsonWorker:
    """`flowforge worker --log-format json`, its stderr lines kept as they come."""

    def __init__(self, workspace: Workspace, prefix: str, config: Path) -> None:
        command = [
            sys.executable, "-m", "flowforge.control.cli", "worker",
            "--nats", NATS_URL, "--prefix", prefix, "--ack-wait", str(LONG.ack_wait),
            "--workspace", str(workspace.root), "--log-format", "json",
        ]  # fmt: skip
        env = {**os.environ, "FLOWFORGE_CONFIG_DIR": str(config)}
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("taking tasks of pool default", 30)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            if text in line:
                return
        pytest.fail(f"no line with {text!r}; the worker said:\n{''.join(self.log)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


async def test_a_json_worker_ties_its_lines_to_the_run_step_and_trace(
    workspace: Workspace, spin_digest: str, nats_prefix: str, tmp_path: Path
) -> None:
    worker = JsonWorker(workspace, nats_prefix, tmp_path / "config")
    bus = await open_bus("nats", nats_prefix, LONG)
    try:
        results = await bus.results()
        task = TaskMessage(
            "run-j", "s1", 2, "default", spin_digest, traceparent=f"00-{TRACE}-{SPAN}-01"
        )
        await bus.publish_task(task)
        worker.wait_for("finished run-j/s1/2: ok", 30)
        delivery = await results.next(timeout=10)
        assert delivery is not None and delivery.message.traceparent == task.traceparent
        await delivery.ack()
    finally:
        await bus.close()
        worker.stop()
    docs = [json.loads(line) for line in worker.log]  # every line parses
    assert all(set(doc) >= SCHEMA for doc in docs)
    mine = [d for d in docs if d["run_id"] == "run-j"]
    assert [d["msg"].split()[0] for d in mine] == ["started", "finished"]
    for doc in mine:
        assert (doc["step"], doc["attempt"]) == ("s1", 2)
        assert (doc["trace_id"], doc["span_id"]) == (TRACE, SPAN)
