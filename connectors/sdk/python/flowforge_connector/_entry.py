"""The `Handler` class componentize-py exports: JSON in, the author's function, JSON out."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _host
from ._failure import Failure

HandleFn = Callable[[Any, Any], Any]

_registered: list[HandleFn] = []


def connector(fn: HandleFn) -> HandleFn:
    """Mark `fn(config, input)` as the connector's entry point (any name will do).

    Without the decorator, the SDK calls the module-level function named `handle`.
    """
    _registered.append(fn)
    return fn


def _entry_point(app: ModuleType) -> HandleFn:
    if len(_registered) > 1:
        names = ", ".join(fn.__name__ for fn in _registered)
        raise RuntimeError(f"@connector marks more than one function ({names}); mark one")
    if _registered:
        return _registered[0]
    handle = getattr(app, "handle", None)
    if not callable(handle):
        raise RuntimeError(
            "app.py defines no connector: write `def handle(config, input)` "
            "(or mark a function with @connector)"
        )
    fn: HandleFn = handle
    return fn


def invoke(fn: HandleFn, config: str, input: str) -> str:
    """Run `fn` on the parsed config and input; return its result as JSON text.

    Raises Failure for anything that should become `err(failure)`.
    """
    try:
        parsed_config = json.loads(config)
    except ValueError as exc:
        raise Failure("invalid-config", f"config is not JSON: {exc}") from None
    try:
        parsed_input = json.loads(input)
    except ValueError as exc:
        raise Failure("invalid-input", f"input is not JSON: {exc}") from None
    try:
        result = fn(parsed_config, parsed_input)
    except Failure:
        raise
    except RecursionError:
        raise Failure("internal", "recursion too deep") from None
    except Exception as exc:
        # No traceback: formatting one reads source files, and the guest has no files.
        raise Failure("internal", f"{type(exc).__name__}: {exc}") from None
    try:
        return json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Failure("internal", f"the result is not JSON-serialisable: {exc}") from None


def make_handler(app: ModuleType) -> type:
    """The class componentize-py instantiates for the `handler` export.

    A module that writes its own `Handler` class (against the generated bindings) keeps it.
    """
    own = getattr(app, "Handler", None)
    if isinstance(own, type):
        return own
    fn = _entry_point(app)

    class Handler(_host.HandlerBase):  # type: ignore[misc]
        def invoke(self, config: str, input: str) -> str:
            try:
                return invoke(fn, config, input)
            except Failure as failure:
                raise _host.to_err(failure) from None

    return Handler
