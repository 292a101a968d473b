"""The `flowforge connector run` contract: one JSON object on stdout, and exit codes
0 ok, 1 connector failure, 2 usage or load error, 3 sandbox stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_cli

WAT = Path(__file__).parents[1] / "fixtures" / "wat"


def test_success_prints_parsed_output_logs_and_stats() -> None:
    result = run_cli("connector", "run", str(WAT / "echo.wat"), "--input", '{"a": [1, 2]}')
    assert result.code == 0, result.stderr
    doc = result.json
    assert doc["ok"] is True
    assert doc["output"] == {"a": [1, 2]}
    assert doc["logs"] == []
    assert set(doc["stats"]) >= {"wall_ms", "fuel_used", "peak_memory_bytes"}


def test_connector_failure_uses_the_wit_kind_and_exit_1() -> None:
    result = run_cli("connector", "run", str(WAT / "fail.wat"))
    assert result.code == 1
    assert result.json["error"] == {
        "kind": "rate-limited",
        "message": "slow down",
        "retry_after_ms": 1500,
    }


def test_input_from_stdin_and_file(tmp_path: Path) -> None:
    result = run_cli("connector", "run", str(WAT / "echo.wat"), "--input", "-", stdin="[true]")
    assert result.json["output"] == [True]
    doc = tmp_path / "input.json"
    doc.write_text('{"from": "file"}')
    result = run_cli("connector", "run", str(WAT / "echo.wat"), "--input", f"@{doc}")
    assert result.json["output"] == {"from": "file"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--input", "{not json"], "--input is not valid JSON"),
        (["--config", "[1,"], "--config is not valid JSON"),
        (["--secret", "novalue"], "expected NAME=VALUE"),
        (["--allow-host", "*"], "--allow-host"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], needle: str) -> None:
    result = run_cli("connector", "run", str(WAT / "echo.wat"), *args)
    assert result.code == 2
    assert needle in result.json["error"]["message"]


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    result = run_cli("connector", "run", str(tmp_path / "nope.wasm"))
    assert result.code == 2
    assert result.json["error"]["kind"] == "load-error"
    assert "no such file" in result.json["error"]["message"]


def test_help_has_an_example() -> None:
    result = run_cli("connector", "run", "--help")
    assert result.code == 0
    assert "Example:" in result.stdout and "--allow-host" in result.stdout
