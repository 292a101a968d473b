"""Hostile guests: each is contained with the right exit code, within its time limit,
with the process's peak memory bounded, and with nothing leaked.

They run through `flowforge connector run` in a child process, so a guest that crashed
or hung the host would fail the test instead of the test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_cli

WAT = Path(__file__).parents[1] / "fixtures" / "wat"
# The CLI process with wasmtime loaded is ~60 MiB; a guest may add its 64 MiB limit.
RSS_BOUND_MIB = 300


def wat(name: str) -> str:
    return str(WAT / f"{name}.wat")


@pytest.mark.parametrize(
    ("fixture", "args", "kind", "within_s"),
    [
        ("loop", ["--timeout", "1"], "timeout", 8),
        ("loop", ["--fuel", "50000000"], "fuel-exhausted", 8),
        ("recursion", [], "trap", 8),
        ("memory_bomb", [], "memory-limit", 8),
        ("huge_output", [], "output-too-large", 8),
        ("log_flood", ["--timeout", "2"], "timeout", 10),
    ],
)
def test_hostile_guest_is_stopped(
    fixture: str, args: list[str], kind: str, within_s: float
) -> None:
    result = run_cli("connector", "run", wat(fixture), *args, timeout=30)
    assert result.code == 3, result.stdout + result.stderr
    doc = result.json
    assert doc["ok"] is False
    assert doc["error"]["kind"] == kind
    # Stopped by its limit, not by the 30 s guard: the sandbox's own clock, since the
    # command's start-up time varies with the machine's load.
    assert doc["stats"]["wall_ms"] < within_s * 1000
    assert result.peak_rss_mib < RSS_BOUND_MIB


def test_memory_growth_stops_at_the_limit() -> None:
    # memory_grow grows page by page until refused and reports how many pages it got.
    result = run_cli("connector", "run", wat("memory_grow"), "--memory", "16")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json["output"] == 256  # 16 MiB / 64 KiB pages
    assert result.json["stats"]["peak_memory_bytes"] == 16 << 20


def test_log_flood_keeps_only_the_capped_lines() -> None:
    result = run_cli("connector", "run", wat("log_flood"), "--timeout", "2")
    logs = result.json["logs"]
    assert 0 < len(logs) <= 1001
    assert logs[-1]["source"] == "sandbox" and "dropped" in logs[-1]["message"]


def test_ungranted_secret_is_refused_and_granted_value_never_shown() -> None:
    refused = run_cli("connector", "run", wat("secret"), "--input", '"db-password"')
    assert refused.code == 1
    assert refused.json["error"]["kind"] == "unauthorized"
    assert "not granted" in refused.json["error"]["message"]

    granted = run_cli(
        "connector", "run", wat("secret"), "--input", '"token"', "--secret", 'token="hunter2"'
    )
    assert "hunter2" not in granted.stdout + granted.stderr
    assert granted.json["logs"][0]["message"] == "***"


@pytest.mark.parametrize(
    ("fixture", "needle"),
    [
        ("forbidden_http", "wasi:http"),
        ("forbidden_custom", "evil:backdoor/api@1.0.0"),
        ("no_export", "missing export"),
        ("wrong_signature", "wrong type"),
        ("core_module", "core WebAssembly module"),
    ],
)
def test_refused_at_load(fixture: str, needle: str) -> None:
    result = run_cli("connector", "run", wat(fixture))
    assert result.code == 2
    assert result.json["error"]["kind"] == "load-error"
    assert needle in result.json["error"]["message"]


def test_garbage_bytes_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(bytes((i * 131 + 7) % 256 for i in range(256)))
    result = run_cli("connector", "run", str(junk))
    assert result.code == 2
    assert "not a WebAssembly component" in result.json["error"]["message"]

    truncated = tmp_path / "truncated.wasm"
    truncated.write_bytes(b"\0asm\x0d\x00\x01\x00\x01\x02")
    result = run_cli("connector", "run", str(truncated))
    assert result.code == 2
    assert "does not compile" in result.json["error"]["message"]
