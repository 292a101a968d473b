"""Median microseconds to instantiate a tiny component with and without our memory creator.

Run from the repository root: `.venv/bin/python -m bench.memory_probe [--rounds N]`.
Each round: a fresh Store with fuel and an epoch deadline, instantiate
tests/fixtures/wat/echo.wat (one 64 KiB memory), call `invoke`, drop the store.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import component as cm

from bench._timing import median_us
from flowforge.runtime._capi import memory as _memory

ECHO = Path(__file__).parents[1] / "tests" / "fixtures" / "wat" / "echo.wat"
HANDLER = "flowforge:connector/handler@0.1.0"


def make_engine(creator: bool) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    if creator:
        _memory.install_memory_creator(config)
    return wasmtime.Engine(config)


def rounds_for(creator: bool, call: bool) -> Callable[[], object]:
    engine = make_engine(creator)
    component = cm.Component(engine, ECHO.read_text())
    linker = cm.Linker(engine)
    with linker.root() as root, root.add_instance("flowforge:connector/host@0.1.0"):
        pass

    def one() -> object:
        store = wasmtime.Store(engine)
        store.set_fuel(10_000_000)
        store.set_epoch_deadline(1_000_000)
        account = _memory.MemoryAccount(64 << 20)
        with _memory.accounting(account):
            instance = linker.instantiate(store, component)
        if call:
            handler = instance.get_export_index(store, HANDLER)
            index = instance.get_export_index(store, "invoke", handler)
            assert index is not None
            invoke = instance.get_func(store, index)
            assert invoke is not None
            invoke(store, "{}", "{}")
        return account

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    for call in (False, True):
        for creator in (False, True):
            label = f"{'instantiate+invoke' if call else 'instantiate':20} creator={creator!s:5}"
            print(f"{label} {median_us(rounds_for(creator, call), args.rounds):8.1f} us")


if __name__ == "__main__":
    main()
