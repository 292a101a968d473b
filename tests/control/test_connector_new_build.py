"""`flowforge connector new` (a folder from a template) and `flowforge connector build`
(the component and its sha256 under dist/, exit 2 with the message on any error)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowforge.control.cli.connector.new import (
    LANGUAGES,
    ScaffoldError,
    connector_name,
    create_connector,
)
from flowforge.sdk import template_dir
from tests.cli import CliResult, run_cli
from tests.guests.build import ZIG_GUEST_DIR

ZIG_MANIFEST = """\
name = "acme/zig-echo"
version = "0.1.0"
description = "Echoes its input (the Zig test guest)"
language = "zig"
license = "Apache-2.0"

[[examples]]
name = "echo"
input = { action = "echo", x = 1 }
[examples.expect]
output = { action = "echo", x = 1 }
"""


# ---- new: names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "publisher", "full"),
    [
        ("hello", None, "local/hello"),
        ("hello", "acme", "acme/hello"),
        ("acme/hello", None, "acme/hello"),
        ("acme/hello", "acme", "acme/hello"),
        ("http-request2", "a-b", "a-b/http-request2"),
    ],
)
def test_a_name_is_short_or_publisher_slash_name(
    name: str, publisher: str | None, full: str
) -> None:
    assert connector_name(name, publisher) == full


@pytest.mark.parametrize(
    ("name", "publisher", "needle"),
    [
        ("Hello", None, "invalid connector name 'Hello'"),
        ("hello_world", None, "invalid connector name"),
        ("-x", None, "invalid connector name"),
        ("", None, "invalid connector name"),
        ("x" * 64, None, "invalid connector name"),
        ("acme/", None, "invalid connector name"),
        ("a/b/c", None, "invalid publisher 'a/b'"),
        ("x", "Acme Inc", "invalid publisher"),
        ("acme/x", "other", "names publisher 'acme' but --publisher is 'other'"),
    ],
)
def test_an_invalid_name_is_refused_with_the_rule(
    name: str, publisher: str | None, needle: str
) -> None:
    with pytest.raises(ScaffoldError, match=re.escape(needle)):
        connector_name(name, publisher)


# ---- new: copying a template ---------------------------------------------------------------


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A throwaway template with placeholders in contents, in a file name and in a folder
    name, a binary file, an executable, and debris that must not be copied."""
    root = tmp_path / "template"
    (root / "src" / "{{short_name}}").mkdir(parents=True)
    (root / "connector.toml").write_text(
        'name = "{{name}}"\ndescription = "{{description}}"\n# {{unknown}} stays\n'
    )
    (root / "src" / "{{short_name}}" / "{{short_name}}_test.txt").write_text(
        "{{short_name}} by {{name}}\r\n"
    )
    (root / "logo.bin").write_bytes(b"\xff\xfe{{name}}\x00")
    (root / "run.sh").write_text("#!/bin/sh\necho {{short_name}}\n")
    (root / "run.sh").chmod(0o755)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    (root / "dist").mkdir()
    (root / "dist" / "old.wasm").write_bytes(b"junk")
    return root


def test_new_fills_placeholders_in_contents_and_names(template: Path, tmp_path: Path) -> None:
    parent = tmp_path / "work"
    made = create_connector(template, parent, "acme/hello", "Says hello")
    assert made.directory == parent / "hello"
    assert (made.name, made.short_name) == ("acme/hello", "hello")
    assert [p.as_posix() for p in made.files] == [
        "connector.toml",
        "logo.bin",
        "run.sh",
        "src/hello/hello_test.txt",
    ]
    out = made.directory
    assert (out / "connector.toml").read_text() == (
        'name = "acme/hello"\ndescription = "Says hello"\n# {{unknown}} stays\n'
    )
    # Line endings are the template's own.
    assert (out / "src/hello/hello_test.txt").read_bytes() == b"hello by acme/hello\r\n"
    assert (out / "logo.bin").read_bytes() == b"\xff\xfe{{name}}\x00"  # binary: verbatim
    assert os.access(out / "run.sh", os.X_OK)
    assert sorted(p.name for p in parent.iterdir()) == ["hello"]  # no staging left behind


def test_new_without_description_writes_a_default(template: Path, tmp_path: Path) -> None:
    made = create_connector(template, tmp_path, "acme/hi")
    assert 'description = "The hi connector"' in (made.directory / "connector.toml").read_text()


def test_new_fills_an_existing_empty_folder(template: Path, tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    made = create_connector(template, tmp_path, "acme/hello", "x")
    assert (made.directory / "connector.toml").is_file()


def test_new_refuses_a_non_empty_folder_and_leaves_it_alone(template: Path, tmp_path: Path) -> None:
    existing = tmp_path / "hello"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    with pytest.raises(ScaffoldError, match="already exists and is not empty"):
        create_connector(template, tmp_path, "acme/hello", "x")
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello", "template"]


def test_new_refuses_a_file_in_the_way(template: Path, tmp_path: Path) -> None:
    (tmp_path / "hello").write_text("")
    with pytest.raises(ScaffoldError, match="already exists"):
        create_connector(template, tmp_path, "acme/hello", "x")


@pytest.mark.parametrize(
    ("description", "needle"),
    [
        ('say "hi"', "may not contain '\"'"),
        ("a\\b", "may not contain"),
        ("two\nlines", "may not contain"),
        ("  ", "is empty"),
        ("x" * 501, "keep it to 500"),
    ],
)
def test_new_refuses_a_description_that_would_break_a_string_literal(
    template: Path, tmp_path: Path, description: str, needle: str
) -> None:
    with pytest.raises(ScaffoldError, match=needle):
        create_connector(template, tmp_path, "acme/hello", description)
    assert not (tmp_path / "hello").exists()


def test_new_reports_a_missing_template(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="no template at"):
        create_connector(tmp_path / "nothing", tmp_path, "acme/hello", "x")


# ---- new: the command ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["Bad", "--lang", "zig"], "invalid connector name 'Bad'"),
        (["acme/x", "--lang", "zig", "--publisher", "other"], "--publisher is 'other'"),
        (["x", "--lang", "zig", "--description", 'a "quote"'], "may not contain"),
    ],
)
def test_new_command_exits_2_with_the_message(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_cli("connector", "new", *args, "--dir", str(tmp_path))
    assert result.code == 2
    assert needle in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_new_command_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "app.py").write_text("")
    result = run_cli("connector", "new", "x", "--lang", "python", "--dir", str(tmp_path))
    assert result.code == 2
    assert "already exists and is not empty" in result.stderr


def test_new_command_rejects_an_unknown_language(tmp_path: Path) -> None:
    result = run_cli("connector", "new", "x", "--lang", "cobol", "--dir", str(tmp_path))
    assert result.code == 2
    assert "cobol" in result.stderr


# ---- build -------------------------------------------------------------------------------


@pytest.fixture
def zig_connector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Zig test guest as a connector folder, built into a cache of its own."""
    monkeypatch.setenv("FLOWFORGE_CACHE_DIR", str(tmp_path / "cache"))  # the child inherits it
    folder = tmp_path / "zig-echo"
    shutil.copytree(ZIG_GUEST_DIR, folder)
    (folder / "connector.toml").write_text(ZIG_MANIFEST)
    return folder


def _build(folder: Path, *extra: str) -> CliResult:
    return run_cli("connector", "build", str(folder), *extra, timeout=300)


def test_build_writes_the_component_and_its_sha256_under_dist(zig_connector: Path) -> None:
    result = _build(zig_connector, "--output", "json")
    assert result.code == 0, result.stderr
    doc = result.json
    wasm = zig_connector / "dist" / "zig-echo.wasm"
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest()
    assert doc["ok"] is True
    assert (doc["name"], doc["version"], doc["language"]) == ("acme/zig-echo", "0.1.0", "zig")
    assert Path(doc["path"]) == wasm
    assert doc["sha256"] == digest
    assert doc["size_bytes"] == wasm.stat().st_size
    assert doc["cached"] is False
    assert doc["seconds"] > 0
    assert (zig_connector / "dist" / "zig-echo.wasm.sha256").read_text() == (
        f"{digest}  zig-echo.wasm\n"
    )
    assert "zig: compiling" in result.stderr  # progress goes to stderr
    # The form `sha256sum -c` checks.
    check = subprocess.run(
        ["sha256sum", "-c", "zig-echo.wasm.sha256"],
        cwd=zig_connector / "dist",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_building_again_is_a_cache_hit_with_the_same_bytes(zig_connector: Path) -> None:
    first = _build(zig_connector, "--output", "json")
    assert first.code == 0, first.stderr
    again = _build(zig_connector, "--output", "json")
    assert again.code == 0, again.stderr
    assert again.json["cached"] is True
    assert again.json["sha256"] == first.json["sha256"]
    # dist/ is an output, not an input: writing it did not change the cache key.
    assert "cached" in again.stderr


def test_build_table_output_names_path_digest_size_and_cache(zig_connector: Path) -> None:
    result = _build(zig_connector)
    assert result.code == 0, result.stderr
    wasm = zig_connector / "dist" / "zig-echo.wasm"
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest()
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["connector"] == "acme/zig-echo 0.1.0 (zig)"
    assert lines["path"] == str(wasm)
    assert lines["sha256"] == digest
    assert lines["size"].endswith(f"({wasm.stat().st_size} bytes)")
    assert lines["cached"] == "no"
    assert lines["time"].endswith(" s")


def test_build_the_current_folder_by_default(zig_connector: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowforge.control.cli", "connector", "build"],
        cwd=zig_connector,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "dist/zig-echo.wasm" in result.stdout
    assert (zig_connector / "dist" / "zig-echo.wasm").is_file()


def test_build_without_a_manifest_exits_2(tmp_path: Path) -> None:
    result = _build(tmp_path, "--output", "json")
    assert result.code == 2
    assert "connector.toml: no such file" in result.stderr
    assert result.json["error"]["kind"] == "manifest"


def test_build_with_an_invalid_manifest_exits_2_listing_the_problem(zig_connector: Path) -> None:
    (zig_connector / "connector.toml").write_text(
        ZIG_MANIFEST.replace('"acme/zig-echo"', '"No Publisher"')
    )
    result = _build(zig_connector)
    assert result.code == 2
    assert "name:" in result.stderr and "publisher/name" in result.stderr
    assert not (zig_connector / "dist").exists()


def test_a_compile_error_exits_2_with_the_compilers_message(zig_connector: Path) -> None:
    with (zig_connector / "main.zig").open("a") as source:
        source.write("\nthis is not zig\n")
    result = _build(zig_connector, "--output", "json")
    assert result.code == 2
    assert result.json["error"]["kind"] == "build"
    assert "main.zig" in result.json["error"]["message"]
    assert "error" in result.stderr
    assert not (zig_connector / "dist").exists()


def test_a_missing_entry_file_exits_2(zig_connector: Path) -> None:
    (zig_connector / "main.zig").unlink()
    result = _build(zig_connector)
    assert result.code == 2
    assert "has no main.zig" in result.stderr


def test_a_missing_toolchain_exits_2_saying_what_to_install(
    zig_connector: Path, tmp_path: Path
) -> None:
    # An environment with flowforge but without the guest toolchains: a second venv that
    # shares the project's site-packages and nothing else, and a PATH with no zig on it.
    venv = tmp_path / "bare-venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")
    if shutil.which("zig", path="/usr/bin:/bin") or shutil.which(
        "python-zig", path="/usr/bin:/bin"
    ):
        pytest.skip("a system zig is on /usr/bin:/bin")
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "flowforge.control.cli", "connector", "build",
         str(zig_connector)],
        env={**os.environ, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "zig not found" in result.stderr
    assert "pip install ziglang" in result.stderr


# ---- new -> build (-> test) with the real templates --------------------------------------


def _has_command(name: str) -> bool:
    return run_cli("connector", name, "--help").code == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_generated_connector_builds_as_generated(language: str, tmp_path: Path) -> None:
    if not (template_dir(language) / "connector.toml").is_file():
        pytest.skip(f"no {language} template yet ({template_dir(language)})")
    # The user's build cache: the generated folder is the same on every run, so only the
    # first run on a machine pays for the toolchain.
    made = run_cli("connector", "new", "x", "--lang", language, "--dir", str(tmp_path))
    assert made.code == 0, made.stderr
    assert "flowforge connector build" in made.stdout
    folder = tmp_path / "x"
    built = run_cli("connector", "build", str(folder), "--output", "json", timeout=600)
    assert built.code == 0, built.stderr
    assert built.json["language"] == language
    assert (folder / "dist" / "x.wasm").is_file()
    if _has_command("test"):
        tested = run_cli("connector", "test", str(folder), timeout=600)
        assert tested.code == 0, tested.stdout + tested.stderr
