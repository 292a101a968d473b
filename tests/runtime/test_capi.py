"""The C-API fast path (`flowforge.runtime._capi`) against the stock wasmtime-py path."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import wasmtime
from wasmtime import component as cm

from flowforge.runtime import _capi
from flowforge.runtime._capi import HostHandler, HostTrap, InvokeExport, InvokeFunc
from flowforge.runtime.values import ERROR_KINDS, Failure, HttpRequest, HttpResponse, LogLevel

# A small connector with a mode per host function. config[0] picks the mode,
# config[1] - '0' is its small integer argument:
#   e        ok(input)                      f<k>  err(failure{kind k, input, none})
#   r<k>     err(failure{kind k, input, some(4000000000)})
#   l<lvl>   log(lvl, input); ok(input)      n     log(info, input) ten times; ok(input)
#   s        secret(input) -> ok(value) | err(failure{internal, reason, none})
#   b...     log(info, config[1..]); then as s  (two host calls)
#   h<t>     fetch(POST, url=input, headers [(a,b),(k,input)], body=input, timeout t*100)
#            ok(r): log each header name (trace) and value (debug), then
#                   err(failure{unavailable, message=r.body, retry-after=some(r.status)})
#            err(e): err(failure{internal, e, none})
#   u        log(info, <the bytes ff fe: invalid UTF-8>)
#   x        unreachable
# cabi_realloc is a bump allocator; post-return resets it.
CONNECTOR = r"""
(component
  (type $host-t (instance
    (type $level (enum "trace" "debug" "info" "warn" "error"))
    (export "log-level" (type $lvl (eq $level)))
    (type $hdrs (list (tuple string string)))
    (type $req (record (field "method" string) (field "url" string) (field "headers" $hdrs)
                       (field "body" (list u8)) (field "timeout-ms" (option u32))))
    (export "http-request" (type $req-e (eq $req)))
    (type $resp (record (field "status" u16) (field "headers" $hdrs) (field "body" (list u8))))
    (export "http-response" (type $resp-e (eq $resp)))
    (export "log" (func (param "level" $lvl) (param "message" string)))
    (export "secret" (func (param "name" string) (result (result string (error string)))))
    (export "fetch" (func (param "request" $req-e) (result (result $resp-e (error string)))))))
  (import "flowforge:connector/host@0.1.0" (instance $host (type $host-t)))

  (core module $Libc
    (memory (export "memory") 1)
    (global $bump (export "bump") (mut i32) (i32.const 4096))
    (func (export "cabi_realloc") (param $old i32) (param $oldsz i32) (param $align i32)
                                  (param $size i32) (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end)
                                (i32.mul (memory.size) (i32.const 65536))) (i32.const 65535))
                                (i32.const 16)))
                          (i32.const -1))
                (then unreachable))))
      (if (local.get $old)
        (then (memory.copy (local.get $p) (local.get $old)
                (select (local.get $oldsz) (local.get $size)
                        (i32.lt_u (local.get $oldsz) (local.get $size))))))
      (global.set $bump (local.get $end))
      (local.get $p)))
  (core instance $libc (instantiate $Libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "cabi_realloc" (core func $realloc))
  (alias export $host "log" (func $log))
  (alias export $host "secret" (func $secret))
  (alias export $host "fetch" (func $fetch))
  (core func $log-low (canon lower (func $log) (memory $mem) string-encoding=utf8))
  (core func $secret-low (canon lower (func $secret) (memory $mem) (realloc $realloc)
                                      string-encoding=utf8))
  (core func $fetch-low (canon lower (func $fetch) (memory $mem) (realloc $realloc)
                                     string-encoding=utf8))

  (core module $Main
    (import "libc" "memory" (memory 1))
    (import "libc" "bump" (global $bump (mut i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (import "host" "secret" (func $secret (param i32 i32 i32)))
    (import "host" "fetch" (func $fetch (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    (data (i32.const 64) "POSTabk\ff\fe")
    (func $ok (param $p i32) (param $l i32) (result i32)
      (i32.store8 (i32.const 256) (i32.const 0))
      (i32.store (i32.const 260) (local.get $p))
      (i32.store (i32.const 264) (local.get $l))
      (i32.const 256))
    (func $err (param $kind i32) (param $p i32) (param $l i32) (param $has i32) (param $retry i32)
               (result i32)
      (i32.store8 (i32.const 256) (i32.const 1))
      (i32.store8 (i32.const 260) (local.get $kind))
      (i32.store (i32.const 264) (local.get $p))
      (i32.store (i32.const 268) (local.get $l))
      (i32.store8 (i32.const 272) (local.get $has))
      (i32.store (i32.const 276) (local.get $retry))
      (i32.const 256))
    (func $secret-result (result i32)
      (if (result i32) (i32.load8_u (i32.const 320))
        (then (call $err (i32.const 6) (i32.load (i32.const 324)) (i32.load (i32.const 328))
                         (i32.const 0) (i32.const 0)))
        (else (call $ok (i32.load (i32.const 324)) (i32.load (i32.const 328))))))
    (func (export "invoke") (param $cp i32) (param $cl i32) (param $ip i32) (param $il i32)
                            (result i32)
      (local $mode i32) (local $arg i32) (local $i i32) (local $n i32) (local $h i32)
      (if (i32.eqz (local.get $cl)) (then (return (call $ok (local.get $ip) (local.get $il)))))
      (local.set $mode (i32.load8_u (local.get $cp)))
      (if (i32.ge_u (local.get $cl) (i32.const 2))
        (then (local.set $arg (i32.sub (i32.load8_u offset=1 (local.get $cp)) (i32.const 48)))))
      (if (i32.eq (local.get $mode) (i32.const 102))
        (then (return (call $err (local.get $arg) (local.get $ip) (local.get $il)
                                 (i32.const 0) (i32.const 0)))))
      (if (i32.eq (local.get $mode) (i32.const 114))
        (then (return (call $err (local.get $arg) (local.get $ip) (local.get $il)
                                 (i32.const 1) (i32.const -294967296)))))
      (if (i32.eq (local.get $mode) (i32.const 108))
        (then (call $log (local.get $arg) (local.get $ip) (local.get $il))
              (return (call $ok (local.get $ip) (local.get $il)))))
      (if (i32.eq (local.get $mode) (i32.const 110))
        (then
          (loop $again
            (call $log (i32.const 2) (local.get $ip) (local.get $il))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 10))))
          (return (call $ok (local.get $ip) (local.get $il)))))
      (if (i32.eq (local.get $mode) (i32.const 115))
        (then (call $secret (local.get $ip) (local.get $il) (i32.const 320))
              (return (call $secret-result))))
      (if (i32.eq (local.get $mode) (i32.const 98))
        (then (call $log (i32.const 2) (i32.add (local.get $cp) (i32.const 1))
                         (i32.sub (local.get $cl) (i32.const 1)))
              (call $secret (local.get $ip) (local.get $il) (i32.const 320))
              (return (call $secret-result))))
      (if (i32.eq (local.get $mode) (i32.const 104))
        (then
          (i32.store (i32.const 128) (i32.const 68))
          (i32.store (i32.const 132) (i32.const 1))
          (i32.store (i32.const 136) (i32.const 69))
          (i32.store (i32.const 140) (i32.const 1))
          (i32.store (i32.const 144) (i32.const 70))
          (i32.store (i32.const 148) (i32.const 1))
          (i32.store (i32.const 152) (local.get $ip))
          (i32.store (i32.const 156) (local.get $il))
          (call $fetch (i32.const 64) (i32.const 4) (local.get $ip) (local.get $il)
                       (i32.const 128) (i32.const 2) (local.get $ip) (local.get $il)
                       (i32.const 1) (i32.mul (local.get $arg) (i32.const 100)) (i32.const 352))
          (if (i32.load8_u (i32.const 352))
            (then (return (call $err (i32.const 6) (i32.load (i32.const 356))
                                     (i32.load (i32.const 360)) (i32.const 0) (i32.const 0)))))
          (local.set $h (i32.load (i32.const 360)))
          (local.set $n (i32.load (i32.const 364)))
          (block $done
            (loop $next
              (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
              (call $log (i32.const 0) (i32.load (local.get $h)) (i32.load offset=4 (local.get $h)))
              (call $log (i32.const 1) (i32.load offset=8 (local.get $h))
                                       (i32.load offset=12 (local.get $h)))
              (local.set $h (i32.add (local.get $h) (i32.const 16)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $next)))
          (return (call $err (i32.const 5) (i32.load (i32.const 368)) (i32.load (i32.const 372))
                             (i32.const 1) (i32.load16_u (i32.const 356))))))
      (if (i32.eq (local.get $mode) (i32.const 117))
        (then (call $log (i32.const 2) (i32.const 71) (i32.const 2))))
      (if (i32.eq (local.get $mode) (i32.const 120)) (then unreachable))
      (call $ok (local.get $ip) (local.get $il)))
    (func (export "post") (param i32) (global.set $bump (i32.const 4096))))
  (core instance $main (instantiate $Main
    (with "libc" (instance $libc))
    (with "host" (instance (export "log" (func $log-low)) (export "secret" (func $secret-low))
                           (export "fetch" (func $fetch-low))))))

  (type $kind (enum "invalid-input" "invalid-config" "unauthorized" "not-found" "rate-limited"
                    "unavailable" "internal"))
  (export $kind-e "error-kind" (type $kind))
  (type $failure (record (field "kind" $kind-e) (field "message" string)
                         (field "retry-after-ms" (option u32))))
  (export $failure-e "failure" (type $failure))
  (func $invoke (param "config" string) (param "input" string)
                (result (result string (error $failure-e)))
    (canon lift (core func $main "invoke") (memory $mem) (realloc $realloc) string-encoding=utf8
                (post-return (core func $main "post"))))
  (instance $handler (export "error-kind" (type $kind-e)) (export "failure" (type $failure-e))
                     (export "invoke" (func $invoke)))
  (export "flowforge:connector/handler@0.1.0" (instance $handler)))
"""

# A guest that imports `host.log` with a signature of its own (u32 level) and
# exports an `invoke` whose ok arm is a u32: both shapes the fast path must
# refuse with a trap rather than read as strings.
ODD_CONNECTOR = r"""
(component
  (import "flowforge:connector/host@0.1.0" (instance $host
    (export "log" (func (param "level" u32) (param "message" string)))))
  (core module $Libc
    (memory (export "memory") 1)
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024)))
  (core instance $libc (instantiate $Libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "cabi_realloc" (core func $realloc))
  (alias export $host "log" (func $log))
  (core func $log-low (canon lower (func $log) (memory $mem) string-encoding=utf8))
  (core module $Main
    (import "libc" "memory" (memory 1))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (func (export "invoke") (param i32 i32 i32 i32) (result i32)
      (if (local.get 1) (then (call $log (i32.const 7) (i32.const 0) (i32.const 0))))
      (i32.store8 (i32.const 256) (i32.const 0))
      (i32.store (i32.const 260) (i32.const 42))
      (i32.const 256)))
  (core instance $main (instantiate $Main
    (with "libc" (instance $libc))
    (with "host" (instance (export "log" (func $log-low))))))
  (func $invoke (param "config" string) (param "input" string) (result (result u32 (error string)))
    (canon lift (core func $main "invoke") (memory $mem) (realloc $realloc) string-encoding=utf8))
  (instance $handler (export "invoke" (func $invoke)))
  (export "flowforge:connector/handler@0.1.0" (instance $handler)))
"""

MIB = 1 << 20


@dataclass
class Recorder:
    """A host handler that records what it was given and answers from tables."""

    secrets: dict[str, str] = field(default_factory=dict)
    response: HttpResponse | str = "no network"
    raise_on_log: int | None = None
    to_raise: BaseException = field(default_factory=lambda: HostTrap("log flood"))
    logs: list[tuple[LogLevel, str]] = field(default_factory=list)
    requests: list[HttpRequest] = field(default_factory=list)

    def log(self, level: LogLevel, message: str) -> None:
        if self.raise_on_log is not None and len(self.logs) >= self.raise_on_log:
            raise self.to_raise
        self.logs.append((level, message))

    def secret(self, name: str) -> tuple[bool, str]:
        if name in self.secrets:
            return True, self.secrets[name]
        return False, f"secret {name!r} not granted"

    def fetch(self, request: HttpRequest) -> HttpResponse | str:
        self.requests.append(request)
        return self.response


def new_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def new_store(engine: wasmtime.Engine) -> wasmtime.Store:
    store = wasmtime.Store(engine)
    store.set_fuel(10**12)
    store.set_epoch_deadline(1_000_000)
    store.set_wasi(wasmtime.WasiConfig())
    return store


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return new_engine()


@pytest.fixture(scope="module")
def connector(engine: wasmtime.Engine) -> cm.Component:
    return cm.Component(engine, CONNECTOR)


class Fast:
    """The fast path: one linker, a handler per store found by context key."""

    def __init__(self, engine: wasmtime.Engine, comp: cm.Component) -> None:
        self.engine = engine
        self.comp = comp
        self.handlers: dict[int, HostHandler] = {}
        self.linker = cm.Linker(engine)
        self.linker.add_wasip2()
        _capi.link_host(self.linker, self.handlers.__getitem__)

    def open(self, handler: HostHandler) -> Callable[[str, str], str | Failure]:
        store = new_store(self.engine)
        self.handlers[_capi.context_key(store)] = handler
        instance = self.linker.instantiate(store, self.comp)
        invoke = InvokeFunc.lookup(instance, store)
        assert invoke is not None
        return lambda config, input: invoke(store, config, input)


class Stock:
    """The same host, written against wasmtime-py's reflective API."""

    def __init__(self, engine: wasmtime.Engine, comp: cm.Component, handler: HostHandler) -> None:
        self.engine = engine
        self.comp = comp
        self.linker = cm.Linker(engine)

        def log(_: Any, level: LogLevel, message: str) -> None:
            handler.log(level, message)

        def secret(_: Any, name: str) -> cm.Variant:
            ok, text = handler.secret(name)
            return cm.Variant("ok" if ok else "err", text)

        def fetch(_: Any, req: Any) -> Any:
            answer = handler.fetch(
                HttpRequest(
                    req.method,
                    req.url,
                    [tuple(h) for h in req.headers],
                    bytes(req.body),
                    getattr(req, "timeout-ms"),
                )
            )
            if isinstance(answer, str):
                return answer
            record = cm.Record()
            for name in ("status", "headers", "body"):
                setattr(record, name, getattr(answer, name))
            return record

        with self.linker.root() as root, root.add_instance(_capi.HOST_INTERFACE) as host:
            host.add_func("log", log)
            host.add_func("secret", secret)
            host.add_func("fetch", fetch)

    def call(self, config: str, input: str) -> str | Failure:
        store = new_store(self.engine)
        instance = self.linker.instantiate(store, self.comp)
        iface = instance.get_export_index(store, "flowforge:connector/handler@0.1.0")
        index = instance.get_export_index(store, "invoke", iface)
        assert index is not None
        func = instance.get_func(store, index)
        assert func is not None
        result = func(store, config, input)
        if isinstance(result, str):
            return result
        return Failure(result.kind, result.message, getattr(result, "retry-after-ms"))


@pytest.fixture(scope="module")
def fast(engine: wasmtime.Engine, connector: cm.Component) -> Fast:
    return Fast(engine, connector)


def both(
    engine: wasmtime.Engine,
    connector: cm.Component,
    fast: Fast,
    config: str,
    input: str,
    make: Callable[[], Recorder],
) -> tuple[str | Failure, Recorder]:
    """Run one call through both paths; assert they agree; return the fast one."""
    stock_handler, fast_handler = make(), make()
    expected = Stock(engine, connector, stock_handler).call(config, input)
    got = fast.open(fast_handler)(config, input)
    assert got == expected
    assert fast_handler.logs == stock_handler.logs
    assert fast_handler.requests == stock_handler.requests
    return got, fast_handler


UNICODE = "héllo wörld ✓ 😀 \U0001d54f \u0000 end"
BIG = ("abcdé😀" * (MIB // 9 + 1))[: MIB // 2] + "x" * MIB


@pytest.mark.parametrize(
    ("config", "input", "expected"),
    [
        ("e", "hello", "hello"),
        ("e", "", ""),
        ("", "empty config", "empty config"),
        ("e", UNICODE, UNICODE),
        ("e", BIG, BIG),
        ("f0", "bad input", Failure("invalid-input", "bad input")),
        ("f3", "", Failure("not-found", "")),
        ("f6", UNICODE, Failure("internal", UNICODE)),
        ("r4", "slow down", Failure("rate-limited", "slow down", 4_000_000_000)),
        ("r5", BIG, Failure("unavailable", BIG, 4_000_000_000)),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 3 else None,
)
def test_invoke_results_match_stock(
    engine: wasmtime.Engine,
    connector: cm.Component,
    fast: Fast,
    config: str,
    input: str,
    expected: str | Failure,
) -> None:
    got, _ = both(engine, connector, fast, config, input, Recorder)
    assert got == expected


def test_every_error_kind_round_trips(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    for i, kind in enumerate(ERROR_KINDS):
        got, _ = both(engine, connector, fast, f"f{i}", kind, Recorder)
        assert got == Failure(kind, kind)


@pytest.mark.parametrize("message", ["plain", "", UNICODE, BIG])
def test_log_levels_and_messages_match_stock(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast, message: str
) -> None:
    for i, level in enumerate(["trace", "debug", "info", "warn", "error"]):
        _, handler = both(engine, connector, fast, f"l{i}", message, Recorder)
        assert handler.logs == [(level, message)]


@pytest.mark.parametrize(
    ("name", "value"),
    [("token", "s3cr3t"), ("", "empty name"), ("ünï", UNICODE), ("empty", ""), ("big", BIG)],
)
def test_secret_ok_matches_stock(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast, name: str, value: str
) -> None:
    got, _ = both(engine, connector, fast, "s", name, lambda: Recorder(secrets={name: value}))
    assert got == value


def test_secret_err_matches_stock(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    got, _ = both(engine, connector, fast, "s", "missing", Recorder)
    assert got == Failure("internal", "secret 'missing' not granted")


def test_two_host_calls_match_stock(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    got, handler = both(
        engine, connector, fast, "bhello", "k", lambda: Recorder(secrets={"k": "v"})
    )
    assert got == "v"
    assert handler.logs == [("info", "hello")]


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "", UNICODE, "a\x00b"])
def test_fetch_request_and_response_match_stock(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast, url: str
) -> None:
    response = HttpResponse(
        status=418,
        headers=[("content-type", "text/plain"), ("x-ünï", "✓"), ("", "")],
        body=b"\x00zero\x00bytes\x00" + url.encode(),
    )
    got, handler = both(engine, connector, fast, "h3", url, lambda: Recorder(response=response))
    body = url.encode()
    assert handler.requests == [
        HttpRequest("POST", url, [("a", "b"), ("k", url)], body, timeout_ms=300)
    ]
    assert handler.logs == [
        ("trace", "content-type"), ("debug", "text/plain"),
        ("trace", "x-ünï"), ("debug", "✓"),
        ("trace", ""), ("debug", ""),
    ]  # fmt: skip
    assert got == Failure("unavailable", response.body.decode(), retry_after_ms=418)


def test_fetch_with_no_headers_and_empty_body(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    got, handler = both(
        engine, connector, fast, "h0", "", lambda: Recorder(response=HttpResponse(204))
    )
    assert handler.requests == [HttpRequest("POST", "", [("a", "b"), ("k", "")], b"", 0)]
    assert got == Failure("unavailable", "", 204)


def test_fetch_err_matches_stock(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    got, _ = both(engine, connector, fast, "h1", "x", lambda: Recorder(response="refused: ü"))
    assert got == Failure("internal", "refused: ü")


def test_fetch_one_mib_bodies_both_ways(fast: Fast) -> None:
    # list<u8> of 1 MiB each way, with zero bytes in it (the stock path would
    # take seconds converting a million values, so this one is fast path only).
    url = ("\x00" + "é" * 1000) * (MIB // 2001) + "\x00"
    response = HttpResponse(200, [], url.encode() + b"\x00tail")
    handler = Recorder(response=response)
    got = fast.open(handler)("h9", url)
    assert handler.requests[0].body == url.encode()
    assert got == Failure("unavailable", response.body.decode(), 200)


def test_host_trap_surfaces_as_the_handlers_exception(fast: Fast) -> None:
    handler = Recorder(raise_on_log=3)
    with pytest.raises(HostTrap) as raised:
        fast.open(handler)("n", "flood")
    assert raised.value is handler.to_raise
    assert len(handler.logs) == 3


def test_unexpected_handler_error_surfaces_unchanged(fast: Fast) -> None:
    boom = KeyError("handler bug")
    handler = Recorder(raise_on_log=0, to_raise=boom)
    with pytest.raises(KeyError) as raised:
        fast.open(handler)("l2", "x")
    assert raised.value is boom


def test_guest_trap_is_a_wasmtime_error_not_a_stale_host_trap(fast: Fast) -> None:
    with pytest.raises(HostTrap):
        fast.open(Recorder(raise_on_log=0))("l2", "x")
    with pytest.raises(wasmtime.WasmtimeError, match="unreachable"):
        fast.open(Recorder())("x", "")


def test_invalid_utf8_from_the_guest_traps(fast: Fast) -> None:
    with pytest.raises(wasmtime.WasmtimeError):
        fast.open(Recorder())("u", "")


def test_a_trapped_instance_refuses_further_calls(fast: Fast) -> None:
    invoke = fast.open(Recorder())
    with pytest.raises(wasmtime.WasmtimeError):
        invoke("x", "")
    with pytest.raises(wasmtime.WasmtimeError):
        invoke("e", "again")


def test_text_that_is_not_utf8_encodable_is_refused_in_python(fast: Fast) -> None:
    with pytest.raises(UnicodeEncodeError):
        fast.open(Recorder())("e", "lone \ud800 surrogate")
    handler = Recorder(secrets={"k": "bad \udfff"})
    with pytest.raises(UnicodeEncodeError):
        fast.open(handler)("s", "k")


def test_a_guest_with_its_own_types_gets_a_trap_not_a_misread(engine: wasmtime.Engine) -> None:
    odd = Fast(engine, cm.Component(engine, ODD_CONNECTOR))
    handler = Recorder()
    with pytest.raises(wasmtime.WasmtimeError, match="host log failed"):
        odd.open(handler)("call log", "")
    assert handler.logs == []
    with pytest.raises(wasmtime.WasmtimeError, match="wrong shape"):
        odd.open(handler)("", "")


def test_invoke_must_be_called_with_its_own_store(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    store = new_store(engine)
    fast.handlers[_capi.context_key(store)] = Recorder()
    invoke = InvokeFunc.lookup(fast.linker.instantiate(store, connector), store)
    assert invoke is not None
    with pytest.raises(ValueError, match="store"):
        invoke(new_store(engine), "e", "x")


def test_export_index_binds_each_instance(
    engine: wasmtime.Engine, connector: cm.Component, fast: Fast
) -> None:
    export = InvokeExport.of(connector)
    assert export is not None
    for text in ("one", "two"):
        store = new_store(engine)
        fast.handlers[_capi.context_key(store)] = Recorder()
        invoke = export.bind(fast.linker.instantiate(store, connector), store)
        assert invoke is not None
        assert invoke(store, "e", text) == text


def test_a_component_without_invoke_has_none(engine: wasmtime.Engine) -> None:
    empty = cm.Component(engine, "(component)")
    assert InvokeExport.of(empty) is None
    store = new_store(engine)
    instance = cm.Linker(engine).instantiate(store, empty)
    assert InvokeFunc.lookup(instance, store) is None


def test_callbacks_outlive_the_linker_and_are_released_after(
    engine: wasmtime.Engine, connector: cm.Component
) -> None:
    gc.collect()  # linkers of earlier tests, freed now rather than in the middle of this one
    before = len(_capi.calls._lookups)
    path = Fast(engine, connector)
    assert len(_capi.calls._lookups) == before + 3
    invoke = path.open(Recorder(secrets={"k": "v"}))
    del path
    gc.collect()
    assert invoke("bx", "k") == "v"  # the store keeps the host functions alive
    del invoke
    gc.collect()
    assert len(_capi.calls._lookups) == before


def test_threads_keep_their_handlers_and_exceptions_apart(fast: Fast) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(150):
                handler = Recorder(secrets={"k": f"{n}-{i}"})
                invoke = fast.open(handler)
                if i % 5 == n % 5:
                    handler.raise_on_log = 0
                    handler.to_raise = HostTrap(f"stop {n}-{i}")
                    with pytest.raises(HostTrap, match=f"stop {n}-{i}$"):
                        invoke(f"b{n}", "k")
                else:
                    assert invoke(f"b{n}", "k") == f"{n}-{i}"
                    assert handler.logs == [("info", str(n))]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def calls(fast: Fast, handler: Recorder) -> Iterator[None]:
    invoke = fast.open(handler)
    text = "ü" * 2048  # 4 KiB: a leaked copy per call would show as 80+ MiB
    while True:
        assert invoke("bq", "k") == handler.secrets["k"]
        result = invoke("h1", text)
        assert isinstance(result, Failure)
        assert result.retry_after_ms == 200
        assert isinstance(invoke("r6", text), Failure)
        assert invoke("e", text) == text
        handler.logs.clear()
        handler.requests.clear()
        yield


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leak_over_many_calls_with_host_callbacks(fast: Fast) -> None:
    handler = Recorder(
        secrets={"k": "s" * 4096},
        response=HttpResponse(200, [("h", "v" * 1024)] * 4, b"\x00" * 4096),
    )
    loop = calls(fast, handler)
    for _ in range(1_000):  # warm up allocator pools
        next(loop)
    gc.collect()
    before = resident_bytes()
    for _ in range(5_000):  # 4 invokes and 13 host calls each: 20,000 invokes
        next(loop)
    gc.collect()
    grown = resident_bytes() - before
    assert grown < 16 * MIB, f"resident size grew by {grown / MIB:.1f} MiB"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leak_when_handlers_trap(fast: Fast) -> None:
    def once() -> None:
        handler = Recorder(raise_on_log=1, to_raise=HostTrap("x" * 4096))
        with pytest.raises(HostTrap):
            fast.open(handler)("n", "y" * 4096)
        # The exception's traceback holds the call's frames and so its store;
        # drop the handler (and with it the exception) as the sandbox would.
        fast.handlers.clear()

    for _ in range(300):
        once()
    gc.collect()
    before = resident_bytes()
    for _ in range(3_000):
        once()
    gc.collect()
    grown = resident_bytes() - before
    assert grown < 16 * MIB, f"resident size grew by {grown / MIB:.1f} MiB"
