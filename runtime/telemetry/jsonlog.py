"""Structured logs: one JSON object per line, one schema for every FlowForge process.

    {"ts": "2026-01-02T03:04:05.123456+00:00", "level": "info", "logger": "flowforge.worker",
     "msg": "finished r1/a/1: ok", "run_id": "r1", "step": "a", "attempt": 1,
     "trace_id": "0af7...", "span_id": "b7ad...", ...extra fields}

`run_id`, `step`, `attempt`, `trace_id` and `span_id` are always present (null when
unknown). They come from the record (`log.info(..., extra={"run_id": ...})`), else the
trace ids from the current span. Anything else passed in `extra` follows as its own
field; an exception adds `exc`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal

from .propagation import current_ids

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
CONTEXT_FIELDS: Final = ("run_id", "step", "attempt", "trace_id", "span_id")
_LEVELS: Final = {"WARNING": "warn", "CRITICAL": "error"}
# What every LogRecord has: anything else on a record came from `extra`.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the schema above."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": _LEVELS.get(record.levelname, record.levelname.lower()),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        for name in CONTEXT_FIELDS:
            doc[name] = fields.get(name)
        if doc["trace_id"] is None:
            doc["trace_id"], doc["span_id"] = current_ids()
        for name, value in fields.items():
            if name not in _STANDARD and name not in doc:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def setup_logging(format: LogFormat = "text", level: int = logging.INFO) -> None:
    """The process's log output on stderr: plain text, or JSON lines (`--log-format json`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


__all__ = [
    "CONTEXT_FIELDS",
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "LogFormat",
    "setup_logging",
]
