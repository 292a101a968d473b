"""The bridge to the bindings componentize-py generates at build time (`wit_world`).

Everything that touches the generated modules lives here, so the rest of the SDK is plain
Python. Outside a build (an editor, a host-side unit test) the bindings do not exist; the
SDK still imports, and only calls into the host fail.
"""

from __future__ import annotations

from typing import Any

try:
    # Generated per build into a fresh folder on componentize-py's path.
    from componentize_py_types import Err  # type: ignore[import-not-found]
    from wit_world import exports  # type: ignore[import-not-found]
    from wit_world.imports import host, types  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - only outside a component build
    Err = None
    exports = host = types = None

from ._failure import Failure

HandlerBase: Any = exports.Handler if exports is not None else object


def _require() -> None:
    if host is None:
        raise RuntimeError(
            "flowforge_connector talks to the FlowForge host only inside a built component"
        )


def log(level: str, message: str) -> None:
    _require()
    host.log(types.LogLevel[level.upper()], message)


def secret(name: str) -> tuple[bool, str]:
    """(True, value), or (False, the host's reason)."""
    _require()
    try:
        return True, str(host.secret(name))
    except Err as refused:
        return False, str(refused.value)


def fetch(
    method: str, url: str, headers: list[tuple[str, str]], body: bytes, timeout_ms: int | None
) -> tuple[int, list[tuple[str, str]], bytes] | str:
    """(status, headers, body), or the host's reason for not reaching the server."""
    _require()
    try:
        response = host.fetch(types.HttpRequest(method, url, headers, body, timeout_ms))
    except Err as refused:
        return str(refused.value)
    return int(response.status), [(str(k), str(v)) for k, v in response.headers], response.body


def to_err(failure: Failure) -> BaseException:
    """The exception componentize-py turns into `err(failure)` for `invoke`."""
    _require()
    kind = types.ErrorKind[failure.kind.upper().replace("-", "_")]
    err: BaseException = Err(types.Failure(kind, failure.message, failure.retry_after_ms))
    return err
