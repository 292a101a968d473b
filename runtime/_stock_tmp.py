"""TEMPORARY: the stock wasmtime-py path with the _capi interface, until _capi lands."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, Protocol

import wasmtime
from wasmtime.component import Instance, Linker, Record, Variant

from .values import Failure, HttpRequest, HttpResponse, LogLevel


class HostTrap(Exception):
    pass


class HostHandler(Protocol):
    def log(self, level: LogLevel, message: str) -> None: ...
    def secret(self, name: str) -> tuple[bool, str]: ...
    def fetch(self, request: HttpRequest) -> HttpResponse | str: ...


def _key(ctx: Any) -> int:
    return ctypes.addressof(ctx._context().contents)


def context_key(store: wasmtime.Store) -> int:
    return _key(store)


_pending: dict[int, BaseException] = {}


def link_host(linker: Linker, handler_for: Callable[[int], HostHandler]) -> None:
    def guard(ctx: Any, fn: Callable[[HostHandler], Any]) -> Any:
        key = _key(ctx)
        try:
            return fn(handler_for(key))
        except BaseException as exc:
            _pending[key] = exc
            raise wasmtime.WasmtimeError(f"host stopped the guest: {exc}") from None

    def log(ctx: Any, level: str, message: str) -> None:
        guard(ctx, lambda h: h.log(level, message))  # type: ignore[arg-type]

    def secret(ctx: Any, name: str) -> Variant:
        ok, text = guard(ctx, lambda h: h.secret(name))
        return Variant("ok" if ok else "err", text)

    def fetch(ctx: Any, req: Any) -> Any:
        request = HttpRequest(
            req.method, req.url, list(req.headers), bytes(req.body), getattr(req, "timeout-ms")
        )
        res = guard(ctx, lambda h: h.fetch(request))
        if isinstance(res, str):
            return res
        rec = Record()
        rec.status = res.status
        rec.headers = res.headers
        rec.body = res.body
        return rec

    with linker.root() as root, root.add_instance("flowforge:connector/host@0.1.0") as host:
        host.add_func("log", log)
        host.add_func("secret", secret)
        host.add_func("fetch", fetch)


class InvokeFunc:
    def __init__(self, func: Any) -> None:
        self._func = func

    @classmethod
    def lookup(cls, instance: Instance, store: wasmtime.Store) -> InvokeFunc | None:
        idx = instance.get_export_index(store, "flowforge:connector/handler@0.1.0")
        if idx is None:
            return None
        fidx = instance.get_export_index(store, "invoke", idx)
        if fidx is None:
            return None
        func = instance.get_func(store, fidx)
        return None if func is None else cls(func)

    def __call__(self, store: wasmtime.Store, config: str, input: str) -> str | Failure:
        key = context_key(store)
        try:
            res = self._func(store, config, input)
        except wasmtime.WasmtimeError:
            exc = _pending.pop(key, None)
            if exc is not None:
                raise exc from None
            raise
        if isinstance(res, str):
            return res
        return Failure(res.kind, res.message, getattr(res, "retry-after-ms"))
