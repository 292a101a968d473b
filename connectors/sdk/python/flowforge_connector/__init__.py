"""FlowForge guest SDK for Python connectors (built with componentize-py).

Write `app.py` with one function; the SDK does the rest (JSON in and out, failures, the
exported `Handler` class):

    from flowforge_connector import Failure, fetch, log, secret

    def handle(config, input):
        if "name" not in input:
            raise Failure.invalid_input("input.name is required")
        log.info("greeting")
        return {"greeting": f"Hello, {input['name']}!"}
"""

from . import _preload  # noqa: F401  (first: snapshot lazily-imported stdlib modules)
from ._entry import connector
from ._failure import KINDS, Failure, failure_for_status, retry_after_ms, status_kind
from ._http import Response, fetch
from ._logging import Logger, log
from ._secrets import secret

__all__ = [
    "KINDS",
    "Failure",
    "Logger",
    "Response",
    "connector",
    "failure_for_status",
    "fetch",
    "log",
    "retry_after_ms",
    "secret",
    "status_kind",
]
