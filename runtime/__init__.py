"""The sandbox host: everything that executes connector components.

The public surface is flat: import what you need from `flowforge.runtime`.
"""

from .cache import CompileCache
from .limits import Limits
from .loader import LoadedComponent, LoadError
from .outcome import (
    ConnectorFailed,
    LogLine,
    Outcome,
    SandboxStopped,
    Stats,
    StopReason,
    Success,
)
from .sandbox import Grants, Sandbox
from .values import ERROR_KINDS, LOG_LEVELS, ErrorKind, Failure, HttpRequest, HttpResponse

__all__ = [
    "ERROR_KINDS",
    "LOG_LEVELS",
    "CompileCache",
    "ConnectorFailed",
    "ErrorKind",
    "Failure",
    "Grants",
    "HttpRequest",
    "HttpResponse",
    "Limits",
    "LoadError",
    "LoadedComponent",
    "LogLine",
    "Outcome",
    "Sandbox",
    "SandboxStopped",
    "Stats",
    "StopReason",
    "Success",
]
