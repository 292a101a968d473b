"""Median microseconds of the stock wasmtime-py path against `flowforge.runtime._capi`.

Run from the repository root: `.venv/bin/python -m bench.capi_probe [--rounds N]`.
The guest is the WAT connector of tests/runtime/test_capi.py (mode `e` returns
its input with no host call; mode `b` calls log and secret, then returns).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import wasmtime
from wasmtime import component as cm

from flowforge.runtime import _capi
from flowforge.runtime.values import HttpRequest, HttpResponse, LogLevel
from tests.runtime.test_capi import CONNECTOR

MIB = 1 << 20


class Quiet:
    """A host that answers at once, so the figures are the crossing, not the host."""

    def log(self, level: LogLevel, message: str) -> None:
        pass

    def secret(self, name: str) -> tuple[bool, str]:
        return True, "value"

    def fetch(self, request: HttpRequest) -> HttpResponse | str:
        return "no network"


def median_us(fn: Callable[[], object], rounds: int) -> float:
    for _ in range(min(rounds, 500)):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def engine(*, pooling: bool) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    if pooling:
        _capi.enable_pooling(config, max_memory_bytes=64 * MIB, max_instances=100)
    return wasmtime.Engine(config)


def new_store(eng: wasmtime.Engine) -> wasmtime.Store:
    store = wasmtime.Store(eng)
    store.set_fuel(10**15)
    store.set_epoch_deadline(1_000_000)
    store.set_wasi(wasmtime.WasiConfig())
    return store


def stock_linker(eng: wasmtime.Engine, host: Quiet) -> cm.Linker:
    linker = cm.Linker(eng)

    def log(_: Any, level: LogLevel, message: str) -> None:
        host.log(level, message)

    def secret(_: Any, name: str) -> cm.Variant:
        ok, text = host.secret(name)
        return cm.Variant("ok" if ok else "err", text)

    with linker.root() as root, root.add_instance(_capi.HOST_INTERFACE) as inst:
        inst.add_func("log", log)
        inst.add_func("secret", secret)
        inst.add_func("fetch", lambda _, request: "no network")
    return linker


def calls(rounds: int) -> None:
    eng = engine(pooling=False)
    comp = cm.Component(eng, CONNECTOR)
    host = Quiet()

    store = new_store(eng)
    instance = stock_linker(eng, host).instantiate(store, comp)
    iface = instance.get_export_index(store, _capi.HANDLER_INTERFACE)
    index = instance.get_export_index(store, "invoke", iface)
    assert index is not None
    stock = instance.get_func(store, index)
    assert stock is not None

    handlers: dict[int, _capi.HostHandler] = {}
    linker = cm.Linker(eng)
    _capi.link_host(linker, handlers.__getitem__)
    fast_store = new_store(eng)
    handlers[_capi.context_key(fast_store)] = host
    fast = _capi.InvokeFunc.lookup(linker.instantiate(fast_store, comp), fast_store)
    assert fast is not None

    for label, config in (("no host call", "e"), ("log + secret", "bx")):
        stock_us = median_us(partial(stock, store, config, "input"), rounds)
        fast_us = median_us(partial(fast, fast_store, config, "input"), rounds)
        print(f"invoke, {label:13}  stock {stock_us:7.1f} us   _capi {fast_us:6.1f} us")


def set_up(rounds: int, *, pooling: bool) -> None:
    eng = engine(pooling=pooling)
    comp = cm.Component(eng, CONNECTOR)
    handlers: dict[int, _capi.HostHandler] = {}
    linker = cm.Linker(eng)
    linker.add_wasip2()
    _capi.link_host(linker, handlers.__getitem__)
    export = _capi.InvokeExport.of(comp)
    assert export is not None
    host = Quiet()

    def instantiate() -> None:
        linker.instantiate(new_store(eng), comp)

    def whole() -> None:
        store = new_store(eng)
        key = _capi.context_key(store)
        handlers[key] = host
        invoke = export.bind(linker.instantiate(store, comp), store)
        assert invoke is not None
        invoke(store, "bx", "input")
        del handlers[key]

    name = "pooling" if pooling else "on demand"
    print(
        f"Store+fuel+epoch+WASI+instantiate, {name:9}  {median_us(instantiate, rounds):6.1f} us"
        f"   + bind + invoke(log, secret) + drop  {median_us(whole, rounds):6.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5000)
    rounds = parser.parse_args().rounds
    calls(rounds)
    set_up(rounds, pooling=False)
    set_up(rounds, pooling=True)


if __name__ == "__main__":
    main()
