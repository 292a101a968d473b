"""Per-invocation memory accounting through our host memory creator (`_memory`)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import component as cm

from flowforge.runtime._capi import memory as _memory
from flowforge.runtime._capi.memory import MemoryAccount, accounting

WAT = Path(__file__).parents[1] / "fixtures" / "wat"
HANDLER = "flowforge:connector/handler@0.1.0"
PAGE = 65536
MIB = 1 << 20

# Two core instances, each with its own memory (`pages_a` and `pages_b` pages): peek/poke/grow
# act on the first. Its data segment puts 42 at address 100, so a memory that does not start
# zeroed or loses its data segment shows up.
TWO_MEMORIES = """
(component
  (core module $a
    (memory (export "mem") {pages_a})
    (data (i32.const 100) "\\2a")
    (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
    (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
  (core module $b (memory (export "mem") {pages_b}))
  (core instance $a (instantiate $a))
  (core instance $b (instantiate $b))
  (func (export "peek") (param "addr" u32) (result u8) (canon lift (core func $a "peek")))
  (func (export "poke") (param "addr" u32) (param "value" u8) (canon lift (core func $a "poke")))
  (func (export "grow") (param "pages" u32) (result s32) (canon lift (core func $a "grow")))
)
"""


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    _memory.install_memory_creator(config)
    return wasmtime.Engine(config)


@dataclass
class Run:
    """One instantiated component in its own store."""

    store: wasmtime.Store
    instance: cm.Instance

    def call(self, name: str, *args: Any) -> Any:
        func = self.instance.get_func(self.store, name)
        assert func is not None, name
        return func(self.store, *args)

    def invoke(self, input: str = "{}") -> Any:
        handler = self.instance.get_export_index(self.store, HANDLER)
        assert handler is not None
        index = self.instance.get_export_index(self.store, "invoke", handler)
        assert index is not None
        func = self.instance.get_func(self.store, index)
        assert func is not None
        return func(self.store, "{}", input)


class Guests:
    """Compiles each component once per engine and instantiates it in fresh stores."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self._components: dict[str, cm.Component] = {}
        self.linker = cm.Linker(engine)
        with self.linker.root() as root, root.add_instance("flowforge:connector/host@0.1.0"):
            pass

    def component(self, text: str) -> cm.Component:
        if text not in self._components:
            self._components[text] = cm.Component(self.engine, text)
        return self._components[text]

    def start(self, text: str, account: MemoryAccount | None) -> Run:
        store = wasmtime.Store(self.engine)
        store.set_fuel(10**9)
        store.set_epoch_deadline(10**9)
        component = self.component(text)
        if account is None:
            return Run(store, self.linker.instantiate(store, component))
        with accounting(account):
            return Run(store, self.linker.instantiate(store, component))


@pytest.fixture(scope="module")
def guests(engine: wasmtime.Engine) -> Guests:
    return Guests(engine)


def fixture(name: str) -> str:
    return (WAT / f"{name}.wat").read_text()


def two_memories(pages_a: int = 2, pages_b: int = 3) -> str:
    return TWO_MEMORIES.format(pages_a=pages_a, pages_b=pages_b)


@pytest.fixture(autouse=True)
def no_memory_left_behind() -> Iterator[None]:
    """Every test must leave as many live memories as it found once its stores are gone."""
    gc.collect()
    before = _memory.live_memory_count()
    yield
    gc.collect()
    assert _memory.live_memory_count() == before


def test_growth_stops_at_the_limit(guests: Guests) -> None:
    account = MemoryAccount(16 * MIB)
    run = guests.start(fixture("memory_grow"), account)
    # memory_grow reports the pages it holds once memory.grow returned -1.
    assert run.invoke() == str(16 * MIB // PAGE)
    assert account.peak_bytes == account.current_bytes == 16 * MIB
    assert account.refused
    assert account.refused_request_bytes == 16 * MIB + PAGE


def test_refusal_records_the_requested_size(guests: Guests) -> None:
    account = MemoryAccount(64 * MIB)
    run = guests.start(fixture("memory_bomb"), account)
    with pytest.raises(wasmtime.WasmtimeError, match="unreachable"):
        run.invoke()
    assert account.refused
    assert account.refused_request_bytes == PAGE + (2 << 30)
    assert account.peak_bytes == PAGE


def test_no_refusal_when_within_the_limit(guests: Guests) -> None:
    account = MemoryAccount(64 * MIB)
    run = guests.start(fixture("echo"), account)
    assert run.invoke('{"x": 1}') == '{"x": 1}'
    assert not account.refused
    assert account.refused_request_bytes == 0
    assert account.peak_bytes == PAGE


def test_peak_covers_every_memory_of_the_invocation(guests: Guests) -> None:
    account = MemoryAccount(64 * MIB)
    run = guests.start(two_memories(2, 3), account)
    assert account.current_bytes == account.peak_bytes == 5 * PAGE
    assert run.call("grow", 4) == 2
    assert account.current_bytes == account.peak_bytes == 9 * PAGE
    del run
    gc.collect()
    assert account.current_bytes == 0
    assert account.peak_bytes == 9 * PAGE


def test_limit_counts_all_memories_together(guests: Guests) -> None:
    account = MemoryAccount(8 * PAGE)
    run = guests.start(two_memories(2, 3), account)
    assert run.call("grow", 4) == -1  # 5 + 4 > 8
    assert account.refused_request_bytes == 6 * PAGE  # memory $a asked to reach 2 + 4 pages
    assert run.call("grow", 3) == 2  # 5 + 3 = 8: exactly the limit
    assert account.peak_bytes == 8 * PAGE


def test_a_minimum_over_the_limit_fails_instantiation(guests: Guests) -> None:
    account = MemoryAccount(4 * PAGE)
    # $a (2 pages) fits; $b (3 more) does not, so one memory was made and must be released.
    with pytest.raises(wasmtime.WasmtimeError, match="memory-limit"):
        guests.start(two_memories(2, 3), account)
    gc.collect()
    assert account.refused
    assert account.refused_request_bytes == 3 * PAGE
    assert account.current_bytes == 0


def test_memory_is_freed_with_its_store(guests: Guests) -> None:
    gc.collect()
    before = _memory.live_memory_count()
    account = MemoryAccount(64 * MIB)
    run = guests.start(two_memories(), account)
    assert _memory.live_memory_count() == before + 2
    del run
    gc.collect()
    assert _memory.live_memory_count() == before
    assert account.current_bytes == 0


def test_memories_outside_accounting_have_no_limit_and_are_freed(guests: Guests) -> None:
    run = guests.start(fixture("memory_bomb"), None)
    assert run.invoke() == "{}"  # the 2 GiB grow succeeds: nothing limits it


def test_data_survives_growth_and_fresh_memory_reads_zero(guests: Guests) -> None:
    run = guests.start(two_memories(), MemoryAccount(64 * MIB))
    assert run.call("peek", 100) == 42  # the data segment
    run.call("poke", 200, 7)
    assert run.call("grow", 100) == 2
    assert run.call("peek", 200) == 7
    run.call("poke", 102 * PAGE - 1, 9)  # the last byte of the grown memory
    del run
    gc.collect()
    # A new instance may reuse the same address space: it must start zeroed again.
    for _ in range(3):
        again = guests.start(two_memories(), MemoryAccount(64 * MIB))
        assert again.call("peek", 200) == 0
        assert again.call("grow", 100) == 2
        assert again.call("peek", 102 * PAGE - 1) == 0


@pytest.mark.parametrize("address", [2 * PAGE, 2 * PAGE + 1, (1 << 31), (1 << 32) - 1])
def test_access_past_the_memory_traps(guests: Guests, address: int) -> None:
    # Compiled code relies on the guard region instead of bounds checks: a miss must be a
    # clean trap, not a crash of the host.
    run = guests.start(two_memories(), MemoryAccount(64 * MIB))
    with pytest.raises(wasmtime.WasmtimeError, match="out of bounds"):
        run.call("peek", address)


def test_threads_each_charge_their_own_account(guests: Guests) -> None:
    limits = [(i + 1) * MIB for i in range(8)]
    accounts = [MemoryAccount(limit) for limit in limits]
    outputs: list[object] = [None] * len(limits)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(limits))
    guests.component(fixture("memory_grow"))  # compile once, before the threads race

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                account = MemoryAccount(limits[i])
                outputs[i] = guests.start(fixture("memory_grow"), account).invoke()
                assert account.peak_bytes == limits[i], account
            accounts[i] = account
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(limits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert outputs == [str(limit // PAGE) for limit in limits]
    for account, limit in zip(accounts, limits, strict=True):
        assert account.peak_bytes == limit
        assert account.refused_request_bytes == limit + PAGE


def test_accounting_restores_the_outer_account() -> None:
    outer, inner = MemoryAccount(1), MemoryAccount(2)
    with accounting(outer):
        with accounting(inner):
            assert _memory._current.account is inner
        assert _memory._current.account is outer
    assert _memory._current.account is None


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_no_leak_over_many_invocations(guests: Guests) -> None:
    def round_trip() -> None:
        account = MemoryAccount(64 * MIB)
        run = guests.start(fixture("echo"), account)
        assert run.invoke('{"n": 1}') == '{"n": 1}'
        del run
        assert account.current_bytes == 0

    for _ in range(2_000):  # warm up caches and allocator arenas
        round_trip()
    gc.collect()
    before = rss_bytes()
    for _ in range(20_000):
        round_trip()
    gc.collect()
    growth = rss_bytes() - before
    assert growth < 8 * MIB, f"RSS grew by {growth / MIB:.1f} MiB over 20,000 invocations"
