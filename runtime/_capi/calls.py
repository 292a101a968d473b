"""The fast path for calls into and out of the guest, through the wasmtime C API.

The stock `wasmtime.component` API rebuilds type information through ctypes on
every call (about 230 us per `Func.__call__`, about 70 us per host callback).
Our world is fixed (`wit/connector.wit`), so each value is converted here by a
hand-written plan, with no reflection.

Ownership rules this module keeps (wasmtime 50 C API):
- Values we pass to wasmtime (call arguments, and the source of the
  `wasmtime_component_val_clone` that fills a host callback's result slot) are
  built in Python-owned ctypes memory. wasmtime only reads them (it copies them
  into its own `Val`s), so nothing of ours is ever freed by wasmtime, and ctypes
  keeps every buffer alive (`c_char_p` fields hold a reference to their bytes)
  until the call returns.
- Values wasmtime gives us: a call's result is owned by us and released with
  `wasmtime_component_val_delete` exactly once, after conversion; a callback's
  arguments stay owned by wasmtime (read only); what the clone writes into a
  callback's result slot is owned by wasmtime.
- A guest may import `host` functions with types of its own choosing (the
  linker functions are untyped), so every value read from wasmtime has its kind
  checked before any pointer in it is followed.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections.abc import Callable
from ctypes import (
    CFUNCTYPE,
    Structure,
    Union,
    addressof,
    c_bool,
    c_char,
    c_char_p,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
    sizeof,
)
from typing import Final, Protocol

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component

from ..values import (
    ERROR_KINDS,
    LOG_LEVELS,
    ErrorKind,
    Failure,
    Headers,
    HttpRequest,
    HttpResponse,
    LogLevel,
)

__all__ = [
    "HANDLER_INTERFACE",
    "HOST_INTERFACE",
    "HostHandler",
    "HostTrap",
    "InvokeExport",
    "InvokeFunc",
    "context_key",
    "link_host",
]

HOST_INTERFACE: Final = "flowforge:connector/host@0.1.0"
HANDLER_INTERFACE: Final = "flowforge:connector/handler@0.1.0"


class HostTrap(Exception):
    """Raised by a host handler to stop the guest with a trap (e.g. a hostile flood).

    The guest traps; the same exception object is then raised from
    `InvokeFunc.__call__`, so the caller can tell "the host stopped you" from a
    trap of the guest's own making.
    """


class HostHandler(Protocol):
    """The host side of `flowforge:connector/host`, for the calls of one store."""

    def log(self, level: LogLevel, message: str) -> None:
        """`log: func(level: log-level, message: string)`."""

    def secret(self, name: str) -> tuple[bool, str]:
        """`secret: func(name) -> result<string, string>`: (True, value) or (False, reason)."""

    def fetch(self, request: HttpRequest) -> HttpResponse | str:
        """`fetch: func(request) -> result<http-response, string>`: a str is the err reason."""


# --- the C layout of wasmtime_component_val_t, as this module reads and writes it


class _Vec(Structure):
    """wasm_byte_vec_t / vallist / valtuple / valrecord as read: (size, data address)."""

    _fields_ = (("size", c_size_t), ("data", c_void_p))


class _Text(Structure):
    """The same layout, written: `data` holds (and keeps alive) a Python bytes object."""

    _fields_ = (("size", c_size_t), ("data", c_char_p))


class _ResultPayload(Structure):
    _fields_ = (("is_ok", c_bool), ("val", c_void_p))


class _Of(Union):
    _fields_ = (
        ("u8", c_uint8),
        ("u16", c_uint16),
        ("u32", c_uint32),
        ("vec", _Vec),
        ("text", _Text),
        ("result", _ResultPayload),
        ("option", c_void_p),
        # valvariant_t (a name and a pointer) is the largest member of the C union.
        ("_largest", c_uint64 * 3),
    )


class _Val(Structure):
    _fields_ = (("kind", c_uint8), ("of", _Of))


class _Entry(Structure):
    """valrecord_entry_t as read."""

    _fields_ = (("name", _Vec), ("val", _Val))


class _EntryOut(Structure):
    """valrecord_entry_t as written."""

    _fields_ = (("name", _Text), ("val", _Val))


# A layout drift in a future wasmtime must fail loudly at import, not corrupt memory.
assert sizeof(_Val) == sizeof(ffi.wasmtime_component_val_t)
assert sizeof(_Entry) == sizeof(ffi.wasmtime_component_valrecord_entry_t)
assert _Val.of.offset == ffi.wasmtime_component_val_t.of.offset

_VAL_SIZE: Final = sizeof(_Val)
_ENTRY_SIZE: Final = sizeof(_Entry)
_ENTRY_VAL: Final = _Entry.val.offset
_PAYLOAD: Final = _Val.of.offset

# wasmtime_component_valkind_t
_U8: Final = 2
_U16: Final = 4
_U32: Final = 6
_STRING: Final = 12
_LIST: Final = 13
_RECORD: Final = 14
_TUPLE: Final = 15
_ENUM: Final = 17
_OPTION: Final = 18
_RESULT: Final = 19

# Our own prototypes (fresh function objects from the CDLL, so the argtypes of
# wasmtime-py's shared ones are untouched): plain integers cross, which is the
# cheapest conversion ctypes has.
_dll = ffi.dll
_func_call = _dll["wasmtime_component_func_call"]
_func_call.argtypes = (c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t)
_func_call.restype = c_void_p
_val_delete = _dll["wasmtime_component_val_delete"]
_val_delete.argtypes = (c_void_p,)
_val_delete.restype = None
_val_clone = _dll["wasmtime_component_val_clone"]
_val_clone.argtypes = (c_void_p, c_void_p)
_val_clone.restype = None
_get_func = _dll["wasmtime_component_instance_get_func"]
_get_func.argtypes = (c_void_p, c_void_p, c_void_p, c_void_p)
_get_func.restype = c_bool
_error_new = _dll["wasmtime_error_new"]
_error_new.argtypes = (c_char_p,)
_error_new.restype = c_void_p

_CALLBACK = CFUNCTYPE(
    c_size_t, c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t
)
_FINALIZER = CFUNCTYPE(None, c_void_p)
_add_func = _dll["wasmtime_component_linker_instance_add_func"]
_add_func.argtypes = (c_void_p, c_char_p, c_size_t, _CALLBACK, c_void_p, _FINALIZER)
_add_func.restype = c_void_p

_LEVELS: Final[dict[bytes, LogLevel]] = {name.encode(): name for name in LOG_LEVELS}
_KINDS: Final[dict[bytes, ErrorKind]] = {name.encode(): name for name in ERROR_KINDS}


class _BadShape(Exception):
    """A value from wasmtime does not have the shape our WIT gives it."""


def _raise_error(ptr: int) -> None:
    raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(ptr, ctypes.POINTER(ffi.wasmtime_error_t)))


# --- reading values wasmtime owns


def _bytes_at(data: int | None, size: int) -> bytes:
    if size == 0:
        return b""
    if data is None or size > 0x7FFFFFFF:
        raise _BadShape("bad buffer")
    return ctypes.string_at(data, size)


def _read_string(addr: int) -> str:
    val = _Val.from_address(addr)
    if val.kind != _STRING:
        raise _BadShape(f"expected string, got kind {val.kind}")
    vec = val.of.vec
    # The component model only lifts valid UTF-8; "replace" is defence, not policy.
    return _bytes_at(vec.data, vec.size).decode("utf-8", "replace")


def _read_name(addr: int, kind: int) -> bytes:
    val = _Val.from_address(addr)
    if val.kind != kind:
        raise _BadShape(f"expected kind {kind}, got {val.kind}")
    return _bytes_at(val.of.vec.data, val.of.vec.size)


def _read_vec(addr: int, kind: int, size: int | None = None) -> tuple[int, int]:
    """(element count, data address) of a list, tuple or record value."""
    val = _Val.from_address(addr)
    if val.kind != kind:
        raise _BadShape(f"expected kind {kind}, got {val.kind}")
    n, data = val.of.vec.size, val.of.vec.data
    if (size is not None and n != size) or (n and not data):
        raise _BadShape("bad vector")
    return n, data or 0


def _read_option_u32(addr: int) -> int | None:
    val = _Val.from_address(addr)
    if val.kind != _OPTION:
        raise _BadShape("expected option")
    inner = val.of.option
    if not inner:
        return None
    some = _Val.from_address(inner)
    if some.kind != _U32:
        raise _BadShape("expected u32")
    return int(some.of.u32)


def _read_headers(addr: int) -> Headers:
    n, data = _read_vec(addr, _LIST)
    headers: Headers = []
    for i in range(n):
        _, pair = _read_vec(data + i * _VAL_SIZE, _TUPLE, 2)
        headers.append((_read_string(pair), _read_string(pair + _VAL_SIZE)))
    return headers


def _read_u8_list(addr: int) -> bytes:
    n, data = _read_vec(addr, _LIST)
    if n == 0:
        return b""
    # A list is homogeneous (wasmtime type-checked it): the first kind is every kind.
    if _Val.from_address(data).kind != _U8:
        raise _BadShape("expected list<u8>")
    # Each element is a whole 32-byte value with its byte at offset 8: take every
    # 32nd byte in one strided copy instead of a Python loop over a million items.
    raw = memoryview((c_char * (n * _VAL_SIZE)).from_address(data)).cast("B")
    return raw[_PAYLOAD::_VAL_SIZE].tobytes()


def _read_request(addr: int) -> HttpRequest:
    _, entries = _read_vec(addr, _RECORD, 5)
    field = [entries + i * _ENTRY_SIZE + _ENTRY_VAL for i in range(5)]
    return HttpRequest(
        method=_read_string(field[0]),
        url=_read_string(field[1]),
        headers=_read_headers(field[2]),
        body=_read_u8_list(field[3]),
        timeout_ms=_read_option_u32(field[4]),
    )


def _read_failure(addr: int) -> Failure:
    _, entries = _read_vec(addr, _RECORD, 3)
    field = [entries + i * _ENTRY_SIZE + _ENTRY_VAL for i in range(3)]
    kind = _KINDS.get(_read_name(field[0], _ENUM))
    if kind is None:
        raise _BadShape("unknown error-kind")
    return Failure(kind, _read_string(field[1]), _read_option_u32(field[2]))


# --- writing values into Python-owned memory (wasmtime clones them)


def _set_text(val: _Val, text: str) -> None:
    # Strict: a lone surrogate must fail here, in Python; invalid UTF-8 handed to
    # wasmtime would abort the process (it unwraps the UTF-8 check).
    data = text.encode("utf-8")
    val.kind = _STRING
    val.of.text.size = len(data)
    val.of.text.data = data


def _set_vals(val: _Val, kind: int, items: ctypes.Array[_Val]) -> None:
    val.kind = kind
    val.of.vec.size = len(items)
    val.of.vec.data = addressof(items)


def _headers_value(val: _Val, headers: Headers, keep: list[object]) -> None:
    pairs = (_Val * len(headers))()
    for pair_val, (name, value) in zip(pairs, headers, strict=True):
        pair = (_Val * 2)()
        _set_text(pair[0], name)
        _set_text(pair[1], value)
        _set_vals(pair_val, _TUPLE, pair)
        keep.append(pair)
    keep.append(pairs)
    _set_vals(val, _LIST, pairs)


def _u8_list_value(val: _Val, body: bytes, keep: list[object]) -> None:
    n = len(body)
    buf = bytearray(n * _VAL_SIZE)
    buf[0::_VAL_SIZE] = bytes([_U8]) * n
    buf[_PAYLOAD::_VAL_SIZE] = body
    items = (c_char * len(buf)).from_buffer(buf)
    keep.append(items)
    val.kind = _LIST
    val.of.vec.size = n
    val.of.vec.data = addressof(items) if n else None


_RESPONSE_FIELDS: Final = (b"status", b"headers", b"body")


def _response_value(val: _Val, response: HttpResponse, keep: list[object]) -> None:
    if not 0 <= response.status <= 0xFFFF:
        raise ValueError(f"http status out of range: {response.status}")
    entries = (_EntryOut * 3)()
    for entry, name in zip(entries, _RESPONSE_FIELDS, strict=True):
        entry.name.size = len(name)
        entry.name.data = name
    entries[0].val.kind = _U16
    entries[0].val.of.u16 = response.status
    _headers_value(entries[1].val, response.headers, keep)
    _u8_list_value(entries[2].val, bytes(response.body), keep)
    keep.append(entries)
    val.kind = _RECORD
    val.of.vec.size = 3
    val.of.vec.data = addressof(entries)


def _write_result(results: int, ok: bool, payload: _Val) -> None:
    top = _Val()
    top.kind = _RESULT
    top.of.result.is_ok = ok
    top.of.result.val = addressof(payload)
    _val_clone(addressof(top), results)


# --- host callbacks

# Per thread, the exception a handler raised during the current call into the
# guest. The callback runs on the thread that entered wasm, so a thread-local
# cannot be crossed by another thread's call (wasmtime-py keeps one global).
_pending = threading.local()

# The `handler_for` of each linked linker, by the token passed as callback data;
# the finalizer wasmtime runs when the last user of the linker's functions
# (the linker, or a store instantiated from it) is gone drops the entry.
_lookups: dict[int, Callable[[int], HostHandler]] = {}
_tokens = itertools.count(1)


def _handler(data: int | None, context: int | None) -> HostHandler:
    return _lookups[data or 0](context or 0)


def _fail(exc: BaseException, what: str) -> int:
    # A value of the wrong shape is the guest's doing (it imported `host` with
    # types of its own): a plain trap. Anything else came from the handler and
    # is raised again to the caller. The guest traps as soon as this returns,
    # so there is one failure per call.
    if not isinstance(exc, _BadShape):
        _pending.exc = exc
    message = f"host {what} failed: {type(exc).__name__}: {exc}"
    return int(_error_new(message.encode("utf-8", "replace")) or 0)


def _log_impl(
    data: int | None,
    context: int | None,
    _ty: int | None,
    args: int | None,
    nargs: int,
    _results: int | None,
    nresults: int,
) -> int:
    try:
        if nargs != 2 or nresults != 0 or not args:
            raise _BadShape("log: wrong arity")
        level = _LEVELS.get(_read_name(args, _ENUM))
        if level is None:
            raise _BadShape("log: unknown level")
        _handler(data, context).log(level, _read_string(args + _VAL_SIZE))
        return 0
    except BaseException as exc:  # nothing may unwind through C
        return _fail(exc, "log")


def _secret_impl(
    data: int | None,
    context: int | None,
    _ty: int | None,
    args: int | None,
    nargs: int,
    results: int | None,
    nresults: int,
) -> int:
    try:
        if nargs != 1 or nresults != 1 or not args or not results:
            raise _BadShape("secret: wrong arity")
        ok, text = _handler(data, context).secret(_read_string(args))
        payload = _Val()
        _set_text(payload, text)
        _write_result(results, bool(ok), payload)
        return 0
    except BaseException as exc:
        return _fail(exc, "secret")


def _fetch_impl(
    data: int | None,
    context: int | None,
    _ty: int | None,
    args: int | None,
    nargs: int,
    results: int | None,
    nresults: int,
) -> int:
    try:
        if nargs != 1 or nresults != 1 or not args or not results:
            raise _BadShape("fetch: wrong arity")
        answer = _handler(data, context).fetch(_read_request(args))
        payload = _Val()
        keep: list[object] = []  # buffers `payload` points into, alive until the clone
        if isinstance(answer, str):
            _set_text(payload, answer)
            _write_result(results, False, payload)
        else:
            _response_value(payload, answer, keep)
            _write_result(results, True, payload)
        return 0
    except BaseException as exc:
        return _fail(exc, "fetch")


def _finalize_impl(data: int | None) -> None:
    _lookups.pop(data or 0, None)


# Module-level, so the C function pointers live as long as the process: no
# linker or store can outlive them.
_LOG_CB: Final = _CALLBACK(_log_impl)
_SECRET_CB: Final = _CALLBACK(_secret_impl)
_FETCH_CB: Final = _CALLBACK(_fetch_impl)
_FINALIZE_CB: Final = _FINALIZER(_finalize_impl)


def context_key(store: wasmtime.Store) -> int:
    """The key `handler_for` receives for calls made in `store` (its context pointer).

    The address is reused once the store is freed: drop the store's handler
    when its invocation ends.
    """
    return int(ctypes.cast(store._context(), c_void_p).value or 0)


def link_host(linker: component.Linker, handler_for: Callable[[int], HostHandler]) -> None:
    """Define `flowforge:connector/host@0.1.0` (log, secret, fetch) on `linker`.

    `handler_for(context_key)` returns the handler of the store a call came from;
    it runs on every host call, so it should be a dict lookup.
    """
    with linker.root() as root, root.add_instance(HOST_INTERFACE) as host:
        for name, callback in ((b"log", _LOG_CB), (b"secret", _SECRET_CB), (b"fetch", _FETCH_CB)):
            token = next(_tokens)
            _lookups[token] = handler_for
            host_ptr = ctypes.cast(host.ptr(), c_void_p).value
            err = _add_func(host_ptr, name, len(name), callback, token, _FINALIZE_CB)
            if err:
                _lookups.pop(token, None)
                _raise_error(err)


# --- calling `invoke`


class InvokeFunc:
    """`flowforge:connector/handler@0.1.0#invoke` of one instance, looked up once."""

    __slots__ = ("_ctx", "_func", "_func_addr", "_store")

    def __init__(
        self, func: ffi.wasmtime_component_func_t, store: wasmtime.Store, ctx: int
    ) -> None:
        # `func` is a plain-data handle this object now owns; holding the store
        # keeps the context pointer `ctx` valid for as long as this object is used.
        self._func = func
        self._func_addr = addressof(func)
        self._store = store
        self._ctx = ctx

    @classmethod
    def lookup(cls, instance: component.Instance, store: wasmtime.Store) -> InvokeFunc | None:
        """The `invoke` export of `instance`, or None if it has none."""
        iface = instance.get_export_index(store, HANDLER_INTERFACE)
        if iface is None:
            return None
        index = instance.get_export_index(store, "invoke", iface)
        if index is None:
            return None
        func = instance.get_func(store, index)
        if func is None:
            return None
        handle = ffi.wasmtime_component_func_t.from_buffer_copy(func._func)
        return cls(handle, store, context_key(store))

    def __call__(self, store: wasmtime.Store, config: str, input: str) -> str | Failure:
        """Call `invoke`: the ok string, or the guest's Failure.

        A trap or wasmtime error raises `wasmtime.WasmtimeError` (as the stock
        API does); if a host handler raised (HostTrap or anything else) during
        the call, that exception is raised instead.
        """
        if store is not self._store:
            raise ValueError("InvokeFunc called with a store other than its own")
        args = (_Val * 2)()
        _set_text(args[0], config)
        _set_text(args[1], input)
        result = _Val()
        _pending.exc = None
        err = _func_call(self._func_addr, self._ctx, addressof(args), 2, addressof(result), 1)
        if err:
            exc: BaseException | None = _pending.exc
            _pending.exc = None
            if exc is not None:
                # The wasmtime error only says "host X failed"; free it and raise
                # what the handler raised.
                ffi.wasmtime_error_delete(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
                raise exc
            _raise_error(err)
        try:
            return _read_invoke_result(addressof(result))
        except _BadShape as exc:
            raise wasmtime.WasmtimeError(
                f"invoke returned a value of the wrong shape: {exc}"
            ) from None
        finally:
            _val_delete(addressof(result))


class InvokeExport:
    """Where `invoke` sits in one component: found once, bound to each instance cheaply.

    Looking the export up by name on every instance costs about 8 us through
    the stock API; binding a component-level index costs one C call.
    """

    __slots__ = ("_index", "_index_addr")

    def __init__(self, index: component.ExportIndex) -> None:
        self._index = index  # owns the C index; freed with this object
        self._index_addr = int(ctypes.cast(index.ptr(), c_void_p).value or 0)

    @classmethod
    def of(cls, comp: component.Component) -> InvokeExport | None:
        """The `invoke` export of `comp`, or None if it has none."""
        iface = comp.get_export_index(HANDLER_INTERFACE)
        if iface is None:
            return None
        index = comp.get_export_index("invoke", iface)
        return None if index is None else cls(index)

    def bind(self, instance: component.Instance, store: wasmtime.Store) -> InvokeFunc | None:
        """`invoke` of `instance` (an instance of this export's component, in `store`)."""
        func = ffi.wasmtime_component_func_t()
        ctx = context_key(store)
        found = _get_func(addressof(instance._instance), ctx, self._index_addr, addressof(func))
        return InvokeFunc(func, store, ctx) if found else None


def _read_invoke_result(addr: int) -> str | Failure:
    val = _Val.from_address(addr)
    if val.kind != _RESULT or not val.of.result.val:
        raise _BadShape("expected result<string, failure>")
    payload = val.of.result.val
    if val.of.result.is_ok:
        return _read_string(payload)
    return _read_failure(payload)
