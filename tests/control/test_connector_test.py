"""The `flowforge connector test` contract: a table or one JSON document, and exit codes
0 every example passed, 1 an example failed, 2 usage, manifest, build or load error."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.guests.build import ZIG_GUEST_DIR

WAT = Path(__file__).parents[1] / "fixtures" / "wat"
FETCH = str(WAT / "fetch.wat")

MANIFEST = """\
name = "acme/fetch"
version = "0.1.0"
description = "GET a URL and return its status"
language = "{language}"
license = "Apache-2.0"

[capabilities]
network = ["api.example.com"]

[limits]
timeout_s = 1
"""

GET_EXAMPLE = """
[[examples]]
name = "GET an item"
input = "https://api.example.com/items/1"
[[examples.http]]
request = { method = "GET", url = "https://api.example.com/items/1" }
response = { status = 200, json = { id = 1 } }
[examples.expect]
output = 200
"""

WRONG_EXAMPLE = """
[[examples]]
name = "expects the wrong status"
input = "https://api.example.com/items/2"
[[examples.http]]
request = { url = "https://api.example.com/items/2" }
response = { status = 404 }
[examples.expect]
output = 200
"""


def connector(tmp_path: Path, *examples: str, language: str = "python") -> Path:
    (tmp_path / "connector.toml").write_text(MANIFEST.format(language=language) + "".join(examples))
    return tmp_path


def test_passing_examples_print_a_table_and_exit_0(tmp_path: Path) -> None:
    result = run_cli(
        "connector", "test", str(connector(tmp_path, GET_EXAMPLE)), "--component", FETCH
    )
    assert result.code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["EXAMPLE", "RESULT", "MS", "REASON"]
    assert lines[1].startswith("GET an item") and " pass " in lines[1]
    assert "acme/fetch: 1 passed, 0 failed (1 example(s))" in result.stdout


def test_a_failing_example_exits_1_with_its_reason(tmp_path: Path) -> None:
    directory = connector(tmp_path, GET_EXAMPLE, WRONG_EXAMPLE)
    result = run_cli("connector", "test", str(directory), "--component", FETCH)
    assert result.code == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("expects the wrong"))
    assert "FAIL" in row and "expected output 200, got 404" in row


def test_json_output_is_one_document(tmp_path: Path) -> None:
    directory = connector(tmp_path, GET_EXAMPLE, WRONG_EXAMPLE)
    result = run_cli(
        "connector",
        "test",
        str(directory),
        "--component",
        FETCH,
        "--output",
        "json",
        "--fault",
        "reset",
        "--latency",
        "50ms,10ms",
    )
    assert result.code == 1
    doc = result.json
    assert doc["ok"] is False
    assert doc["connector"] == "acme/fetch" and doc["version"] == "0.1.0"
    assert len(doc["component_sha256"]) == 64
    assert doc["latency"] == {"fixed_ms": 50.0, "jitter_ms": 10.0}
    assert doc["faults"] == ["reset"]
    assert doc["summary"] == {"total": 2, "passed": 1, "failed": 1}
    first, second = doc["examples"]
    assert set(first) == {
        "name",
        "passed",
        "reason",
        "outcome",
        "kind",
        "wall_ms",
        "fuel",
        "peak_memory_bytes",
        "http_requests",
        "faults",
    }
    assert first["passed"] is True and first["outcome"] == "success"
    assert first["wall_ms"] >= 50
    assert second["reason"] == "expected output 200, got 404"
    assert first["faults"] == [
        {
            "fault": "reset",
            "outcome": "failure",
            "kind": "unavailable",
            "retryable": True,
            "retry_after_ms": None,
            "message": first["faults"][0]["message"],
            "wall_ms": first["faults"][0]["wall_ms"],
        }
    ]


def test_fault_table(tmp_path: Path) -> None:
    directory = connector(tmp_path, GET_EXAMPLE)
    result = run_cli("connector", "test", str(directory), "--component", FETCH, "--fault", "all")
    assert result.code == 0, result.stderr  # faults are a report; they never fail an example
    out = result.stdout
    assert "Injected faults (which failures the connector reports as retryable):" in out
    faults = out.split("Injected faults", 1)[1].splitlines()
    rows = {line.split()[3]: line for line in faults if line.startswith("GET an item  ")}
    assert set(rows) == {"http-500", "http-503", "http-429", "timeout", "reset"}
    assert "stopped timeout" in rows["timeout"] and " no " in rows["timeout"]
    assert "failure unavailable" in rows["reset"] and " yes " in rows["reset"]
    assert "success" in rows["http-429"]


def test_undeclared_host_fails_with_the_clear_message(tmp_path: Path) -> None:
    example = GET_EXAMPLE.replace("api.example.com", "data.example.org")
    result = run_cli(
        "connector",
        "test",
        str(connector(tmp_path, example)),
        "--component",
        FETCH,
        "--output",
        "json",
    )
    assert result.code == 1
    reason = result.json["examples"][0]["reason"]
    assert "needs data.example.org" in reason and "declare it in capabilities.network" in reason


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--latency", "fast"], "expected LATENCY[,JITTER]"),
        (["--latency", "200ms,x"], "is not a duration"),
        (["--fault", "http-418"], "http-418"),
        (["--output", "yaml"], "yaml"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_cli(
        "connector", "test", str(connector(tmp_path, GET_EXAMPLE)), "--component", FETCH, *args
    )
    assert result.code == 2
    assert needle in result.stderr


def test_manifest_errors_exit_2_with_the_manifest_message(tmp_path: Path) -> None:
    missing = run_cli("connector", "test", str(tmp_path / "nowhere"), "--component", FETCH)
    assert missing.code == 2
    assert "no such file" in missing.stderr
    (tmp_path / "connector.toml").write_text('name = "Not A Name"\n')
    bad = run_cli("connector", "test", str(tmp_path), "--component", FETCH, "--output", "json")
    assert bad.code == 2
    assert bad.json["error"]["kind"] == "manifest-error"
    assert "publisher/name" in bad.json["error"]["message"]


def test_load_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli(
        "connector",
        "test",
        str(connector(tmp_path, GET_EXAMPLE)),
        "--component",
        str(tmp_path / "none.wasm"),
        "--output",
        "json",
    )
    assert result.code == 2
    assert result.json["error"]["kind"] == "load-error"


def test_no_examples_is_not_a_pass(tmp_path: Path) -> None:
    result = run_cli("connector", "test", str(connector(tmp_path)), "--component", FETCH)
    assert result.code == 1
    assert "has no [[examples]]" in result.stdout


def test_builds_the_folder_first(tmp_path: Path) -> None:
    """Without --component, DIR is built with its manifest's language (progress on stderr)."""
    shutil.copy(ZIG_GUEST_DIR / "main.zig", tmp_path / "main.zig")
    echo = textwrap.dedent("""
        [[examples]]
        name = "echo"
        input = { action = "echo", n = 1 }
        [examples.expect]
        output = { action = "echo", n = 1 }
    """)
    result = run_cli(
        "connector", "test", str(connector(tmp_path, echo, language="zig")), timeout=300
    )
    assert result.code == 0, result.stdout + result.stderr
    assert "zig:" in result.stderr
    assert "1 passed, 0 failed" in result.stdout


def test_build_errors_exit_2_with_the_build_message(tmp_path: Path) -> None:
    (tmp_path / "main.zig").write_text("this is not zig\n")
    directory = connector(tmp_path, GET_EXAMPLE, language="zig")
    result = run_cli("connector", "test", str(directory), "--output", "json", timeout=300)
    assert result.code == 2
    assert result.json["error"]["kind"] == "build-error"
    assert "main.zig" in result.json["error"]["message"]


def test_help_has_an_example() -> None:
    result = run_cli("connector", "test", "--help")
    assert result.code == 0
    assert "Example:" in result.stdout and "--fault" in result.stdout
