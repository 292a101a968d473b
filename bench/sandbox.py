"""Per-call cost of the sandbox, beside a raw wasmtime call and a native Python function.

Prints the median microseconds of: loading a compiled component from the on-disk cache,
and instantiate + invoke through the sandbox (fresh Store, limits, capabilities), for a
WAT component (with and without a host call) and a Python (componentize-py) component.

    python -m bench.sandbox [--rounds N] [--output json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime.component import Linker

from bench._timing import median_us
from flowforge.runtime import CompileCache, Grants, Sandbox, Success
from flowforge.runtime.engine import get_engine
from flowforge.runtime.loader import LoadedComponent

ROOT = Path(__file__).resolve().parent.parent
WAT = ROOT / "tests" / "fixtures" / "wat"
HANDLER = "flowforge:connector/handler@0.1.0"


def raw_wasmtime_call(component: LoadedComponent) -> Callable[[], object]:
    """The stock wasmtime-py path: fresh Store, instantiate, reflective Func call."""
    engine = get_engine()
    linker = Linker(engine)

    def call() -> object:
        store = wasmtime.Store(engine)
        store.set_fuel(10**9)
        store.set_epoch_deadline(1000)
        instance = linker.instantiate(store, component.component)
        handler = instance.get_export_index(store, HANDLER)
        invoke = instance.get_export_index(store, "invoke", handler)
        assert invoke is not None
        func = instance.get_func(store, invoke)
        assert func is not None
        return func(store, "{}", '{"x": 1}')

    return call


def native(config: str, input: str) -> str:
    return json.dumps(json.loads(input))


def python_component() -> Path | None:
    try:
        from tests.guests.build import build_guest
    except ImportError:
        return None
    print("building the Python guest (cached by source hash)...", file=sys.stderr)
    return build_guest("python").path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args()
    rounds: int = args.rounds
    figures: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        cache = CompileCache(Path(tmp))
        sandbox = Sandbox(cache)
        echo_wasm = bytes(wasmtime.wat2wasm((WAT / "echo.wat").read_text()))
        echo = sandbox.load(echo_wasm)
        log = sandbox.load(bytes(wasmtime.wat2wasm((WAT / "log.wat").read_text())))
        engine = get_engine()
        figures["wat: load from cache"] = median_us(
            lambda: cache.load(engine, echo_wasm, echo.sha256), rounds // 10
        )
        figures["wat echo: sandbox instantiate + invoke"] = median_us(
            lambda: sandbox.run(echo, input='{"x": 1}'), rounds
        )
        grants = Grants(secrets={"k": "v"})
        figures["wat log (1 host call): sandbox instantiate + invoke"] = median_us(
            lambda: sandbox.run(log, input="hello", grants=grants), rounds
        )
        figures["wat echo: raw wasmtime-py instantiate + call"] = median_us(
            raw_wasmtime_call(echo), rounds
        )
        figures["native python function"] = median_us(lambda: native("{}", '{"x": 1}'), rounds)

        path = python_component()
        if path is not None:
            data = path.read_bytes()
            py = sandbox.load(data)  # compiles once (tens of seconds) into the temp cache
            figures["python: load from cache"] = median_us(
                lambda: cache.load(engine, data, py.sha256), 20, warmup=2
            )
            py_input = '{"action": "echo", "x": 1}'
            assert isinstance(sandbox.run(py, input=py_input), Success)
            figures["python echo: sandbox instantiate + invoke"] = median_us(
                lambda: sandbox.run(py, input=py_input), max(rounds // 10, 50)
            )
        sandbox.close()

    if args.output == "json":
        print(json.dumps({k: round(v, 1) for k, v in figures.items()}, indent=2))
        return
    width = max(map(len, figures))
    print(f"{'median microseconds':<{width}}  value")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:10.1f}")


if __name__ == "__main__":
    main()
