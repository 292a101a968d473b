"""Grep everything a run produced for a secret value: span names, attributes, events and
statuses; stored step log lines; run events; captured stdout/stderr; artefact bodies,
audit rows and every row of the database; any other text a test adds.

    grep = SecretGrep("s3cr3t-value-42")
    grep.spans(exporter.get_finished_spans())
    grep.log_records(await storage.logs.read(run_id))
    grep.events(await storage.events.read(run_id))
    grep.text("stderr", captured.err)
    grep.assert_absent()

Besides the value itself it looks for the forms a leak usually takes: JSON-escaped,
base64 and hex.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from flowforge.control.storage import AuditRecord, Event, LogRecord, Storage
from flowforge.control.storage.artefacts import ArtefactRef


def _forms(value: str) -> dict[str, str]:
    raw = value.encode("utf-8")
    return {
        "as is": value,
        "JSON-escaped": json.dumps(value)[1:-1],
        "base64": base64.b64encode(raw).decode("ascii"),
        "hex": raw.hex(),
    }


class SecretGrep:
    """Collects where a secret value showed up; `assert_absent` fails naming each place."""

    def __init__(self, secret: str) -> None:
        self.forms = _forms(secret)
        self.found: list[str] = []
        self.searched = 0  # pieces of text looked at: a grep over nothing proves nothing

    def text(self, where: str, text: str) -> None:
        self.searched += 1
        for form_name, form in self.forms.items():
            if form in text:
                at = text.index(form)
                excerpt = text[max(0, at - 40) : at + len(form) + 40]
                self.found.append(f"{where} ({form_name}): ...{excerpt}...")

    def value(self, where: str, value: Any) -> None:
        """Any JSON-able value (or dataclass), as its JSON text."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        self.text(where, json.dumps(value, default=str, ensure_ascii=False))

    def spans(self, spans: Iterable[ReadableSpan]) -> None:
        for span in spans:
            where = f"span {span.name!r}"
            self.text(where, span.name)
            self.value(f"{where} attributes", dict(span.attributes or {}))
            self.text(f"{where} status", span.status.description or "")
            for event in span.events:
                self.text(f"{where} event", event.name)
                self.value(f"{where} event attributes", dict(event.attributes or {}))

    def log_records(self, records: Iterable[LogRecord]) -> None:
        for record in records:
            self.value(f"step log line {record.run_id}#{record.seq}", record)

    def events(self, events: Iterable[Event]) -> None:
        for event in events:
            self.value(f"event {event.run_id}#{event.seq} {event.type}", event.data)

    # --- added by AUD: artefacts, audit rows, and every row of every table ----------------

    def artefacts(self, bodies: Iterable[tuple[ArtefactRef, bytes]]) -> None:
        for ref, body in bodies:
            where = f"artefact {ref.run_id}/{ref.step}#{ref.attempt} {ref.kind}"
            self.text(where, body.decode("utf-8", errors="replace"))

    def audit_records(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            self.value(f"audit row {record.seq} {record.action}", record.to_json())

    async def database(self, storage: Storage) -> None:
        """Every row of every table of the database, as text (binary columns decoded
        leniently: a value stored in clear inside a blob shows up too)."""

        def dump(conn: Connection) -> list[tuple[str, str]]:
            found: list[tuple[str, str]] = []
            for table in inspect(conn).get_table_names():
                for number, row in enumerate(conn.execute(text(f'SELECT * FROM "{table}"'))):
                    cells = [
                        bytes(c).decode("utf-8", errors="replace")
                        if isinstance(c, bytes | memoryview)
                        else str(c)
                        for c in row
                    ]
                    found.append((f"table {table} row {number}", "\t".join(cells)))
            return found

        for where, row_text in await storage.db.transaction(dump):
            self.text(where, row_text)

    def assert_absent(self) -> None:
        assert self.searched, "nothing was searched"
        assert not self.found, "the secret value leaked:\n" + "\n".join(self.found)


__all__ = ["SecretGrep"]
