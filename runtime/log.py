"""The log capability: what a connector logs (through `host.log`, stdout or stderr),
capped in lines and bytes, with secret values masked before anything is kept."""

from __future__ import annotations

from collections.abc import Callable

from .limits import Limits
from .outcome import LogLine, LogSource
from .values import LogLevel

_STREAM_LEVEL: dict[LogSource, LogLevel] = {"stdout": "info", "stderr": "warn"}
_MAX_PARTIAL = 64 * 1024


class LogCapture:
    """Collects one invocation's log lines; past the caps, lines are counted, not kept."""

    def __init__(self, limits: Limits, scrub: Callable[[str], str]) -> None:
        self._max_lines = limits.log_lines
        self._bytes_left = limits.log_bytes
        self._scrub = scrub
        self._lines: list[LogLine] = []
        self._dropped = 0
        self._partial: dict[LogSource, bytearray] = {}

    def add(self, level: LogLevel, message: str, source: LogSource = "host") -> None:
        size = len(message.encode("utf-8", "replace"))
        if len(self._lines) >= self._max_lines or size > self._bytes_left:
            self._dropped += 1
            return
        self._bytes_left -= size
        self._lines.append(LogLine(level, self._scrub(message), source))

    def stream(self, source: LogSource) -> Callable[[bytes], None]:
        """A writer for a WASI output stream: complete lines become log lines."""
        buffer = self._partial.setdefault(source, bytearray())

        def write(data: bytes) -> None:
            buffer.extend(data)
            while (end := buffer.find(b"\n")) >= 0:
                self._emit(source, bytes(buffer[:end]))
                del buffer[: end + 1]
            if len(buffer) > _MAX_PARTIAL:  # a flood with no newline: cut it into lines
                self._emit(source, bytes(buffer))
                buffer.clear()

        return write

    def _emit(self, source: LogSource, raw: bytes) -> None:
        self.add(_STREAM_LEVEL[source], raw.decode("utf-8", "replace").rstrip("\r"), source)

    def lines(self) -> list[LogLine]:
        """The kept lines, with any unterminated stream output and a note of what was dropped."""
        for source, buffer in self._partial.items():
            if buffer:
                self._emit(source, bytes(buffer))
                buffer.clear()
        if self._dropped:
            note = f"{self._dropped} log lines dropped: the log cap was reached"
            self._lines.append(LogLine("warn", note, "sandbox"))
            self._dropped = 0
        return self._lines
