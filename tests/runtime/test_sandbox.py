"""The sandbox's outcomes, limits, capture, concurrency and compile cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import wasmtime

from flowforge.runtime import (
    CompileCache,
    ConnectorFailed,
    Failure,
    Grants,
    Limits,
    LoadError,
    Sandbox,
    SandboxStopped,
    Success,
)
from flowforge.runtime.secrets import Scrubber

WAT = Path(__file__).parents[1] / "fixtures" / "wat"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(CompileCache(tmp_path_factory.mktemp("compiled")))


def binary(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm((WAT / f"{name}.wat").read_text()))


def test_success_carries_output_and_stats(sandbox: Sandbox) -> None:
    outcome = sandbox.run(sandbox.load(WAT / "echo.wat"), input='{"n": [1, 2, "é"]}')
    assert isinstance(outcome, Success)
    assert json.loads(outcome.output) == {"n": [1, 2, "é"]}
    assert outcome.stats.fuel_used > 0
    assert outcome.stats.wall_ms > 0


def test_connector_failure_is_typed(sandbox: Sandbox) -> None:
    outcome = sandbox.run(sandbox.load(WAT / "fail.wat"))
    assert isinstance(outcome, ConnectorFailed)
    assert outcome.failure == Failure("rate-limited", "slow down", 1500)


def test_output_that_is_not_json_is_an_internal_failure(sandbox: Sandbox) -> None:
    outcome = sandbox.run(sandbox.load(WAT / "echo.wat"), input="not json")
    assert isinstance(outcome, ConnectorFailed)
    assert outcome.failure.kind == "internal"
    assert "not JSON" in outcome.failure.message


def test_logs_are_captured_with_secrets_masked(sandbox: Sandbox) -> None:
    grants = Grants(secrets={"token": "s3cr3t-value"})
    outcome = sandbox.run(sandbox.load(WAT / "log.wat"), input="using s3cr3t-value", grants=grants)
    assert isinstance(outcome, Success)
    assert [(ln.level, ln.message, ln.source) for ln in outcome.logs] == [
        ("info", "using ***", "host")
    ]


def test_secret_value_is_masked_in_output(sandbox: Sandbox) -> None:
    secret = sandbox.load(WAT / "secret.wat")
    # secret.wat returns the value it read as its output and logs it.
    outcome = sandbox.run(secret, input='"pw"', grants=Grants(secrets={"pw": '"hunter2"'}))
    assert isinstance(outcome, Success)
    assert outcome.output == '"***"'
    assert [ln.message for ln in outcome.logs] == ["***"]

    raw = 'pa"ss\nword'  # not JSON once returned: an internal failure that shows no value
    outcome = sandbox.run(secret, input='"pw"', grants=Grants(secrets={"pw": raw}))
    assert isinstance(outcome, ConnectorFailed)
    assert "pa" not in outcome.failure.message and "word" not in outcome.failure.message
    assert [ln.message for ln in outcome.logs] == ["***"]


def test_scrubber_masks_values_that_json_escapes() -> None:
    scrub = Scrubber({"a": 'pa"ss\nword', "b": "x"})
    document = json.dumps({"v": 'one pa"ss\nword two', 'pa"ss\nword': [1, "xx"]})
    assert json.loads(scrub.json(document)) == {"v": "one *** two", "***": [1, "******"]}


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="memory_bytes must be positive"):
        Limits(memory_bytes=0)
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)


def test_each_invocation_gets_a_fresh_store(sandbox: Sandbox) -> None:
    loop = sandbox.load(WAT / "loop.wat")
    echo = sandbox.load(WAT / "echo.wat")
    stopped = sandbox.run(loop, limits=Limits(fuel=1_000_000))
    assert isinstance(stopped, SandboxStopped) and stopped.reason == "fuel-exhausted"
    # A trap leaves nothing behind: the next call of any component runs normally.
    assert isinstance(sandbox.run(echo, input="[1]"), Success)
    assert isinstance(sandbox.run(loop, limits=Limits(timeout_s=0.2)), SandboxStopped)


async def test_async_runs_concurrently_off_the_event_loop(sandbox: Sandbox) -> None:
    loop = sandbox.load(WAT / "loop.wat")
    echo = sandbox.load(WAT / "echo.wat")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    slow = [sandbox.run_async(loop, limits=Limits(timeout_s=0.5)) for _ in range(2)]
    fast = [sandbox.run_async(echo, input=f"[{i}]") for i in range(20)]
    outcomes = await asyncio.gather(*slow, *fast)
    task.cancel()
    assert [o.reason for o in outcomes[:2] if isinstance(o, SandboxStopped)] == ["timeout"] * 2
    assert [json.loads(o.output) for o in outcomes[2:] if isinstance(o, Success)] == [
        [i] for i in range(20)
    ]
    assert ticks >= 20  # the loop kept running while guests spun for 0.5 s


def test_compile_cache_hit_and_corrupt_artefact_recompiled(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    wasm = binary("echo")
    first = Sandbox(cache).load(wasm)
    artefact = cache.artefact_path(first.sha256)
    assert artefact.is_file()
    good = artefact.read_bytes()

    # Flip bytes in the middle: the recorded digest no longer matches, so it is rebuilt.
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    artefact.write_bytes(bytes(damaged))
    fresh = Sandbox(cache)
    assert isinstance(fresh.run(fresh.load(wasm), input="[1]"), Success)
    assert artefact.read_bytes() == good

    # Truncated, and with a digest that matches the damage: wasmtime refuses it, we rebuild.
    artefact.write_bytes(good[:100])
    artefact.with_suffix(".sha256").write_text(__import__("hashlib").sha256(good[:100]).hexdigest())
    again = Sandbox(cache)
    assert isinstance(again.run(again.load(wasm), input="[2]"), Success)
    assert artefact.read_bytes() == good


def test_load_errors_name_the_problem(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such file"):
        sandbox.load(tmp_path / "missing.wasm")
    with pytest.raises(LoadError, match="is a directory"):
        sandbox.load(tmp_path)


def test_wasi_stdout_becomes_log_lines_with_nothing_granted(sandbox: Sandbox) -> None:
    component = sandbox.load(WAT / "wasi_stdout.wat")
    assert component.imports_wasi
    outcome = sandbox.run(component)
    assert isinstance(outcome, Success)
    assert [(ln.level, ln.message, ln.source) for ln in outcome.logs] == [
        ("info", "hello from stdout", "stdout")
    ]
