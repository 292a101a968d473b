"""The one wasmtime Engine of this process, and the epoch ticker that bounds wall-clock time.

Every store made from this engine meters fuel and checks an epoch deadline, so both must be
set on each store before any call (an unset deadline traps at once, which is the safe default).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from importlib.metadata import version
from typing import Final

import wasmtime

from ._capi import install_memory_creator

EPOCH_TICK_S: Final = 0.005
"""How often the ticker advances the epoch: the granularity of wall-clock deadlines."""

MAX_WASM_STACK: Final = 1 << 20
"""Guest stack bound; deep recursion traps with a stack overflow instead of growing."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything that makes a compiled artefact valid only for this engine."""

    consume_fuel: bool = True
    # Our memory creator accounts each invocation's memory; wasmtime maps copy-on-write
    # data images only into memories it made itself, so that is off with it.
    host_memory_creator: bool = True
    epoch_interruption: bool = True
    max_wasm_stack: int = MAX_WASM_STACK
    cranelift_opt_level: str = "speed"

    def fingerprint(self) -> str:
        """A stable text naming the settings and the wasmtime release, for cache keys."""
        return (
            f"wasmtime-{version('wasmtime')};fuel={int(self.consume_fuel)};"
            f"epoch={int(self.epoch_interruption)};stack={self.max_wasm_stack};"
            f"memcreator={int(self.host_memory_creator)};"
            f"opt={self.cranelift_opt_level}"
        )


def epoch_ticks(seconds: float) -> int:
    """Epoch ticks that cover `seconds` (at least one, so a deadline never lands at once)."""
    return max(1, math.ceil(seconds / EPOCH_TICK_S))


class _Ticker(threading.Thread):
    """Advances the engine's epoch on a fixed period; a daemon so it never blocks exit."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        super().__init__(name="flowforge-epoch-ticker", daemon=True)
        self._engine = engine
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(EPOCH_TICK_S):
            self._engine.increment_epoch()


_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
SETTINGS: Final = EngineSettings()


def get_engine() -> wasmtime.Engine:
    """The process-wide engine, created (with its ticker) on first use."""
    global _engine
    with _lock:
        if _engine is None:
            config = wasmtime.Config()
            config.consume_fuel = SETTINGS.consume_fuel
            config.epoch_interruption = SETTINGS.epoch_interruption
            config.max_wasm_stack = SETTINGS.max_wasm_stack
            config.cranelift_opt_level = SETTINGS.cranelift_opt_level
            config.wasm_component_model = True
            if SETTINGS.host_memory_creator:
                install_memory_creator(config)
            engine = wasmtime.Engine(config)
            _Ticker(engine).start()
            _engine = engine
        return _engine
