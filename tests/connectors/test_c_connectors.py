"""The C SDK (its JSON library natively, its glue through the real host), its template, and
the csv connector: each builds and passes `flowforge connector test`, and behaves as
documented."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowforge.control.build import BuildError, build_component
from flowforge.runtime import ConnectorFailed, LoadedComponent, Sandbox, Success
from flowforge.sdk import sdk_dir
from tests.cli import run_cli
from tests.connectors.support import (
    BUILD_TIMEOUT_S,
    CONNECTORS,
    call,
    connector_test,
    failed,
    failure_kind,
    load,
    output,
)

CSV_DIR = CONNECTORS / "csv"
C_TESTS = Path(__file__).resolve().parent / "c"
PROBE_DIR = C_TESTS / "probe"


@pytest.fixture(scope="module")
def csv_connector(sandbox: Sandbox) -> LoadedComponent:
    return load(sandbox, CSV_DIR, "c")


@pytest.fixture(scope="module")
def probe(sandbox: Sandbox) -> LoadedComponent:
    return load(sandbox, PROBE_DIR, "c")


# ---- the JSON library, natively ------------------------------------------------------------


def _compilers() -> list[tuple[str, list[str]]]:
    # zig cc is always installed with the toolchains; gcc adds AddressSanitizer where present.
    found = [("zig-cc-ubsan", [sys.executable, "-m", "ziglang", "cc", "-fsanitize=undefined"])]
    if shutil.which("gcc") is not None:
        found.append(("gcc-asan-ubsan", ["gcc", "-fsanitize=address,undefined"]))
    return found


@pytest.mark.parametrize(("label", "compiler"), _compilers(), ids=[c[0] for c in _compilers()])
def test_the_json_library_passes_its_native_tests(
    label: str, compiler: list[str], tmp_path: Path
) -> None:
    sdk = sdk_dir("c")
    binary = tmp_path / "json_test"
    subprocess.run(
        [
            *compiler, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
            "-fno-sanitize-recover=all", "-I", str(sdk),
            str(C_TESTS / "json_test.c"), str(sdk / "flowforge_json.c"),
            "-o", str(binary), "-lm",
        ],
        check=True, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, cwd=tmp_path,
    )  # fmt: skip
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{label}:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.startswith("ok "), done.stdout


# ---- flowforge connector test --------------------------------------------------------------


def test_csv_passes_connector_test() -> None:
    report = connector_test(CSV_DIR).json
    assert report["ok"] is True
    assert report["summary"]["failed"] == 0
    assert report["summary"]["total"] >= 7


def test_the_sdk_probe_passes_connector_test_with_retryable_faults() -> None:
    result = connector_test(
        PROBE_DIR, "--fault", "http-503", "--fault", "http-429", "--fault", "reset",
        "--fault", "timeout",
    )  # fmt: skip
    examples = {e["name"]: e for e in result.json["examples"]}
    assert all(e["passed"] for e in examples.values()), examples
    faults = {f["fault"]: f for f in examples["a text response"]["faults"]}
    # The SDK's shared mapping: 5xx and transport errors -> unavailable, 429 -> rate-limited
    # with the Retry-After header (2 s) as retry-after-ms; all of them retryable.
    assert (faults["http-503"]["kind"], faults["http-503"]["retryable"]) == ("unavailable", True)
    assert faults["http-429"]["kind"] == "rate-limited"
    assert faults["http-429"]["retry_after_ms"] == 2000
    assert (faults["reset"]["kind"], faults["reset"]["retryable"]) == ("unavailable", True)
    assert (faults["timeout"]["kind"], faults["timeout"]["retryable"]) == ("unavailable", True)


def test_the_template_passes_connector_test_as_generated(tmp_path: Path) -> None:
    made = run_cli("connector", "new", "acme/hello", "--lang", "c", "--dir", str(tmp_path))
    assert made.code == 0, made.stderr
    folder = tmp_path / "hello"
    for name in ["main.c", "README.md", "connector.toml"]:
        assert not re.search(r"\{\{(name|short_name|description)\}\}", (folder / name).read_text())
    assert "acme/hello" in (folder / "main.c").read_text()
    result = connector_test(folder)
    assert result.json["summary"]["passed"] == 3


# ---- the SDK's glue through the host --------------------------------------------------------


def test_the_component_imports_nothing_but_the_host(probe: LoadedComponent) -> None:
    assert probe.imports_wasi is False


def test_unparseable_config_and_input_fail_before_the_handler(
    sandbox: Sandbox, probe: LoadedComponent
) -> None:
    got = failed(sandbox.run(probe, config="{oops", input="{}")).failure
    assert got.kind == "invalid-config"
    assert "config is not valid JSON" in got.message and "line 1, column 2" in got.message
    got = failed(sandbox.run(probe, config="{}", input='{"a": [1,]}')).failure
    assert got.kind == "invalid-input"
    assert "input is not valid JSON" in got.message


@pytest.mark.parametrize(
    "kind",
    [
        "invalid-input",
        "invalid-config",
        "unauthorized",
        "not-found",
        "rate-limited",
        "unavailable",
        "internal",
    ],
)
def test_every_failure_kind_crosses_with_its_retry_hint(
    sandbox: Sandbox, probe: LoadedComponent, kind: str
) -> None:
    outcome = call(
        sandbox,
        probe,
        {"action": "fail"},
        {"kind": kind, "message": "why: caf\u00e9", "retry_after_ms": 1500},
    )
    assert isinstance(outcome, ConnectorFailed), outcome
    assert (outcome.failure.kind, outcome.failure.message) == (kind, "why: caf\u00e9")
    assert outcome.failure.retry_after_ms == 1500


def test_a_failure_without_a_retry_hint_has_none(sandbox: Sandbox, probe: LoadedComponent) -> None:
    outcome = call(sandbox, probe, {"action": "fail"}, {"kind": "not-found", "message": "gone"})
    assert isinstance(outcome, ConnectorFailed)
    assert outcome.failure.retry_after_ms is None


def test_ff_failed_without_a_failing_call_is_internal(
    sandbox: Sandbox, probe: LoadedComponent
) -> None:
    got = failed(call(sandbox, probe, {"action": "failed-without-cause"}, {})).failure
    assert got.kind == "internal" and "no SDK call has failed" in got.message


def test_logs_arrive_with_their_levels_and_valid_utf8(
    sandbox: Sandbox, probe: LoadedComponent
) -> None:
    outcome = call(sandbox, probe, {"action": "log"}, {"message": "h\u00e9llo"})
    assert output(outcome) is True
    lines = [(line.level, line.message) for line in outcome.logs]
    assert lines == [
        ("debug", "debug 1"),
        ("info", "info h\u00e9llo"),
        ("warn", "warn"),
        ("error", "bad byte \ufffd here"),  # an ill-formed byte arrives as U+FFFD
    ]


def test_json_round_trips_through_the_guest(sandbox: Sandbox, probe: LoadedComponent) -> None:
    value = {
        "s": 'quote " backslash \\ tab \t nl \n nul \u0000 \u00e9 \U0001f600 \u2028',
        "n": [0, -1, 1.5, 1e-7, 123456789012345678, 1.0],
        "nested": [[[{"k": None}]]],
        "b": [True, False],
        "": "empty key",
    }
    outcome = call(sandbox, probe, {"action": "echo"}, value)
    assert output(outcome) == value
    assert isinstance(outcome, Success)
    # Parsed numbers are written back as they came: no precision lost.
    assert "123456789012345678" in outcome.output


def test_a_large_document_round_trips(sandbox: Sandbox, probe: LoadedComponent) -> None:
    value = [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(20000)]
    assert output(call(sandbox, probe, {"action": "echo"}, value)) == value


def test_a_connector_using_stdio_fails_to_build_with_advice(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.c").write_text(
        '#include <stdio.h>\n#include "flowforge.h"\n'
        "ff_result handle(ff_ctx *ctx, const ff_json *c, const ff_json *i) {\n"
        '    (void)ctx; (void)c; (void)i; printf("hi\\n"); return ff_ok(NULL);\n}\n'
    )
    with pytest.raises(BuildError, match="log with ff_log"):
        build_component(source, "c", cache_dir=tmp_path / "cache")


def test_a_compile_error_shows_the_compiler_message(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.c").write_text(
        '#include "flowforge.h"\n'
        "ff_result handle(ff_ctx *ctx, const ff_json *c, const ff_json *i) {\n"
        "    return ff_ok(no_such_thing);\n}\n"
    )
    with pytest.raises(BuildError) as caught:
        build_component(source, "c", cache_dir=tmp_path / "cache")
    assert "no_such_thing" in caught.value.detail
    assert "main.c:3" in caught.value.detail


# ---- csv: parse ------------------------------------------------------------------------------


def parse(sandbox: Sandbox, csv_connector: LoadedComponent, text: str, **config: Any) -> Any:
    return output(call(sandbox, csv_connector, config, {"text": text}))


def test_parse_follows_rfc_4180(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    text = 'a,b,c\r\n1,"x, y","say ""hi"""\r\n2,"multi\r\nline",\r\n'
    assert parse(sandbox, csv_connector, text) == {
        "columns": ["a", "b", "c"],
        "rows": [
            {"a": "1", "b": "x, y", "c": 'say "hi"'},
            {"a": "2", "b": "multi\r\nline", "c": ""},
        ],
        "row_count": 2,
    }


@pytest.mark.parametrize(
    "text",
    [
        "a,b\n1,2\n3,4",  # LF, no final line break
        "a,b\r\n1,2\r\n3,4\r\n",  # CRLF
        "a,b\r1,2\r3,4\r",  # old Mac CR
        "\ufeffa,b\n1,2\n3,4\n",  # a UTF-8 byte order mark
        "a,b\n\n1,2\n\n\n3,4\n\n",  # blank lines are skipped
    ],
)
def test_parse_accepts_every_line_ending(
    sandbox: Sandbox, csv_connector: LoadedComponent, text: str
) -> None:
    result = parse(sandbox, csv_connector, text)
    assert result["rows"] == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_parse_matches_pythons_csv_module(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    rows = [
        ["plain", "with,comma", 'with "quotes"', "with\nnewline", "", " spaced "],
        ["\u00e9t\u00e9", "\U0001f600", "tab\there", "\r\n", '"', ","],
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    result = parse(sandbox, csv_connector, buffer.getvalue(), header=False)
    assert result["rows"] == rows


def test_parse_without_header_keeps_ragged_rows(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    result = parse(sandbox, csv_connector, "1\n2,3\n,\n", header=False)
    assert result == {"rows": [["1"], ["2", "3"], ["", ""]], "row_count": 3}


def test_parse_can_keep_blank_lines(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    result = parse(sandbox, csv_connector, "1\n\n2\n", header=False, skip_empty_lines=False)
    assert result["rows"] == [["1"], [""], ["2"]]


def test_a_quoted_empty_field_is_a_row(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    assert parse(sandbox, csv_connector, 'x\n""\n')["rows"] == [{"x": ""}]


def test_parse_with_other_delimiters(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    assert parse(sandbox, csv_connector, 'a\tb\n"1\t2"\t3\n', delimiter="\t")["rows"] == [
        {"a": "1\t2", "b": "3"}
    ]
    assert parse(sandbox, csv_connector, "a;b\n1,5;2\n", delimiter=";")["rows"] == [
        {"a": "1,5", "b": "2"}
    ]


def test_empty_text_has_no_rows(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    assert parse(sandbox, csv_connector, "") == {"columns": [], "rows": [], "row_count": 0}
    assert parse(sandbox, csv_connector, "a,b\r\n") == {
        "columns": ["a", "b"],
        "rows": [],
        "row_count": 0,
    }


def test_an_unterminated_quote_names_the_line_it_opened_on(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    text = 'a,b\n1,2\n3,"never\nclosed\n4,5\n'
    got = failed(call(sandbox, csv_connector, {}, {"text": text})).failure
    assert got.kind == "invalid-input"
    assert "line 3" in got.message and "unterminated quote" in got.message


def test_text_after_a_closing_quote_is_invalid(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    got = failed(call(sandbox, csv_connector, {}, {"text": 'a\n"x"y\n'})).failure
    assert got.kind == "invalid-input" and "line 2" in got.message


def test_a_row_of_the_wrong_width_names_its_line(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    text = 'a,b\n1,2\n"multi\nline",2\n1\n'
    got = failed(call(sandbox, csv_connector, {}, {"text": text})).failure
    assert got.kind == "invalid-input"
    assert got.message == "line 5: 1 field(s), but the header has 2 column(s)"


def test_a_repeated_header_name_is_invalid(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    got = failed(call(sandbox, csv_connector, {}, {"text": "a,b,a\n1,2,3\n"})).failure
    assert got.kind == "invalid-input" and '"a" twice' in got.message


@pytest.mark.parametrize(
    ("config", "input", "kind"),
    [
        ({"operation": "sort"}, {"text": ""}, "invalid-config"),
        ({"operation": 1}, {"text": ""}, "invalid-config"),
        ({"delimiter": "\u00e9"}, {"text": ""}, "invalid-config"),
        ({"delimiter": "\n"}, {"text": ""}, "invalid-config"),
        ({"delimiter": ""}, {"text": ""}, "invalid-config"),
        ({"line_ending": "\r"}, {"text": ""}, "invalid-config"),
        ({"columns": ["a", 1]}, {"text": ""}, "invalid-config"),
        ({}, {"rows": []}, "invalid-input"),
        ({"operation": "write"}, {"text": "a"}, "invalid-input"),
        ({"operation": "write"}, {"rows": [1]}, "invalid-input"),
    ],
)
def test_bad_config_and_input(
    sandbox: Sandbox,
    csv_connector: LoadedComponent,
    config: dict[str, Any],
    input: dict[str, Any],
    kind: str,
) -> None:
    assert failure_kind(call(sandbox, csv_connector, config, input)) == kind


# ---- csv: write ------------------------------------------------------------------------------


def write(sandbox: Sandbox, csv_connector: LoadedComponent, rows: Any, **config: Any) -> str:
    result = output(call(sandbox, csv_connector, {"operation": "write", **config}, {"rows": rows}))
    assert result["row_count"] == len(rows)
    text: str = result["text"]
    return text


def test_write_quotes_only_where_needed(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    rows = [{"a": "plain", "b": "x,y", "c": 'q"q', "d": "l\nf", "e": "c\rr"}]
    assert write(sandbox, csv_connector, rows) == (
        'a,b,c,d,e\r\nplain,"x,y","q""q","l\nf","c\rr"\r\n'
    )


def test_write_values_of_every_type(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    rows = [[1, 2.5, True, False, None, {"k": [1]}, "s"]]
    assert write(sandbox, csv_connector, rows) == '1,2.5,true,false,,"{""k"":[1]}",s\r\n'


def test_write_takes_columns_from_every_object_first_seen_first(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    rows = [{"b": 1}, {"a": 2, "b": 3}, {"c": 4}]
    assert write(sandbox, csv_connector, rows, line_ending="\n") == "b,a,c\n1,,\n3,2,\n,,4\n"


def test_write_with_chosen_columns_and_no_header(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    rows = [{"a": 1, "b": 2, "c": 3}]
    assert write(sandbox, csv_connector, rows, columns=["c", "a"], header=False) == "3,1\r\n"


def test_a_lone_empty_field_is_quoted_so_it_reads_back(
    sandbox: Sandbox, csv_connector: LoadedComponent
) -> None:
    assert write(sandbox, csv_connector, [[""], ["x"]]) == '""\r\nx\r\n'


def test_write_then_parse_round_trips(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    rows = [
        {"id": str(i), "text": f'row {i}: "quoted", with\r\nbreaks \u00e9', "empty": ""}
        for i in range(500)
    ]
    for delimiter in [",", ";", "\t", "|"]:
        text = write(sandbox, csv_connector, rows, delimiter=delimiter)
        parsed = parse(sandbox, csv_connector, text, delimiter=delimiter)
        assert parsed["rows"] == rows
        assert list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)) == rows


def test_a_large_document_parses(sandbox: Sandbox, csv_connector: LoadedComponent) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "name", "score"])
    for i in range(20000):
        writer.writerow([i, f"name {i}", i * 0.5])
    outcome = call(sandbox, csv_connector, {}, {"text": buffer.getvalue()})
    result = output(outcome)
    assert result["row_count"] == 20000
    assert result["rows"][19999] == {"id": "19999", "name": "name 19999", "score": "9999.5"}
