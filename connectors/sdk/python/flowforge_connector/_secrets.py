"""Secrets the workflow granted to this step."""

from __future__ import annotations

from . import _host
from ._failure import Failure


def secret(name: str) -> str:
    """The value of the secret `name`; a Failure (unauthorized) when it was not granted.

    The host masks the value wherever it appears in the output, a failure or a log line.
    """
    ok, value = _host.secret(name)
    if not ok:
        raise Failure("unauthorized", value)
    return value
