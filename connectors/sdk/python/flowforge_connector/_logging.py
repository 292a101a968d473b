"""Logging through the host: the step log, with secret values masked by the host.

`print` does not work in a connector (WASI is stubbed out, so stdout traps); use `log`.
"""

from __future__ import annotations

from typing import Final

from . import _host

LEVELS: Final = ("trace", "debug", "info", "warn", "error")


class Logger:
    """`log(level, message)`, or `log.info(message)` and friends."""

    def __call__(self, level: str, message: object) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
        _host.log(level, str(message))

    def trace(self, message: object) -> None:
        self("trace", message)

    def debug(self, message: object) -> None:
        self("debug", message)

    def info(self, message: object) -> None:
        self("info", message)

    def warn(self, message: object) -> None:
        self("warn", message)

    def error(self, message: object) -> None:
        self("error", message)


log: Final = Logger()
