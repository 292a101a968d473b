"""`flowforge.control.build`: real builds of the test guests, the cache, and the errors."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from flowforge.control.build import BuildError, ToolchainError, build_component
from flowforge.control.build.cache import build_key, source_files, tree_inputs
from flowforge.control.build.world import check_component
from tests.guests.build import PYTHON_GUEST_DIR, ZIG_GUEST_DIR, build_guest, guest_cache_dir

# A component binary starts with the wasm magic and the component-model layer/version.
COMPONENT_HEADER = b"\0asm\x0d\x00\x01\x00"


@pytest.fixture
def zig_copy(tmp_path: Path) -> Path:
    source = tmp_path / "zig-src"
    shutil.copytree(ZIG_GUEST_DIR, source)
    return source


@pytest.fixture
def python_copy(tmp_path: Path) -> Path:
    source = tmp_path / "py-src"
    shutil.copytree(PYTHON_GUEST_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    return source


@pytest.mark.parametrize("guest", ["python_guest", "zig_guest"])
def test_each_guest_builds_into_a_connector_component(
    guest: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(guest)
    assert path.read_bytes()[:8] == COMPONENT_HEADER
    check_component(path)  # the sandbox would load it


@pytest.mark.parametrize("language", ["python", "zig"])
def test_building_unchanged_sources_again_is_a_cache_hit(
    language: str, request: pytest.FixtureRequest
) -> None:
    first: Path = request.getfixturevalue(f"{language}_guest")
    again = build_guest("python" if language == "python" else "zig")
    assert again.cached
    assert again.path == first
    assert again.path.parent == guest_cache_dir()


def test_a_fresh_build_then_a_hit_report_the_same_component(zig_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    messages: list[str] = []
    built = build_component(zig_copy, "zig", cache_dir=cache, progress=messages.append)
    hit = build_component(zig_copy, "zig", cache_dir=cache)
    assert not built.cached and hit.cached
    assert (hit.path, hit.sha256) == (built.path, built.sha256)
    assert built.path.parent == cache
    assert any("compiling" in m for m in messages)
    # Only finished artefacts carry a key's name; the scratch folder is gone.
    assert [p.name for p in cache.iterdir()] == [built.path.name]


def test_editing_a_source_file_changes_the_key(zig_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = build_component(zig_copy, "zig", cache_dir=cache)
    with (zig_copy / "main.zig").open("a") as source:
        source.write("\n// an edit\n")
    after = build_component(zig_copy, "zig", cache_dir=cache)
    assert not after.cached
    assert after.path != before.path


def test_the_key_covers_names_contents_language_and_tools(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "a.py").write_text("x = 1\n")

    def key(language: str = "python", tools: tuple[str, ...] = ("t==1",)) -> str:
        inputs = tree_inputs("src", tree)
        return build_key(language=language, tool_versions=tools, inputs=inputs)

    base = key()
    assert key("zig") != base
    assert key(tools=("t==2",)) != base
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert key() == base  # build debris is not an input
    (tree / "a.py").rename(tree / "b.py")
    assert key() != base  # same bytes under another name
    assert source_files(tree) == [Path("b.py")]
    assert tree_inputs("wit", tree, "*.wit") == []


def test_a_build_stopped_half_way_leaves_nothing_that_is_trusted(
    zig_copy: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    def interrupt(message: str) -> None:
        if "wrapping" in message:  # after zig, before the component exists
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_component(zig_copy, "zig", cache_dir=cache, progress=interrupt)
    assert list(cache.glob("*.wasm")) == []
    assert not build_component(zig_copy, "zig", cache_dir=cache).cached


def test_a_python_syntax_error_is_a_build_error_with_the_compilers_message(
    python_copy: Path, tmp_path: Path
) -> None:
    (python_copy / "app.py").write_text("def broken(:\n    pass\n")
    with pytest.raises(BuildError) as caught:
        build_component(python_copy, "python", cache_dir=tmp_path / "cache")
    assert "SyntaxError" in caught.value.detail
    assert "Stack backtrace" not in caught.value.detail  # the tool's noise is trimmed
    assert list((tmp_path / "cache").glob("*.wasm")) == []


def test_a_zig_syntax_error_is_a_build_error_with_the_compilers_message(
    zig_copy: Path, tmp_path: Path
) -> None:
    (zig_copy / "main.zig").write_text("pub fn broken( void {}\n")
    with pytest.raises(BuildError) as caught:
        build_component(zig_copy, "zig", cache_dir=tmp_path / "cache")
    assert "main.zig:1:" in caught.value.detail
    assert "error:" in caught.value.detail


def test_a_zig_guest_without_the_invoke_export_is_refused(zig_copy: Path, tmp_path: Path) -> None:
    (zig_copy / "main.zig").write_text("export fn unrelated() void {}\n")
    with pytest.raises(BuildError) as caught:
        build_component(zig_copy, "zig", cache_dir=tmp_path / "cache")
    assert "handler" in str(caught.value)


def test_sources_without_an_entry_point_are_a_build_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(BuildError, match=r"main\.zig"):
        build_component(tmp_path / "src", "zig", cache_dir=tmp_path / "cache")
    with pytest.raises(BuildError, match=r"app\.py"):
        build_component(tmp_path / "src", "python", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("language", "package"), [("python", "componentize-py"), ("zig", "ziglang")]
)
def test_a_missing_toolchain_says_which_package_to_install(
    language: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interpreter in an empty environment, and nothing on PATH.
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty_bin / "python"))
    monkeypatch.setenv("PATH", str(empty_bin))
    source = PYTHON_GUEST_DIR if language == "python" else ZIG_GUEST_DIR
    with pytest.raises(ToolchainError) as caught:
        build_component(source, language, cache_dir=tmp_path / "cache")  # type: ignore[arg-type]
    assert caught.value.package == package
    assert f"pip install {package}" in str(caught.value)


FOREIGN_IMPORT_WAT = """
(component
  (import "evil:backdoor/api@1.0.0" (instance (export "open-door" (func))))
)
"""


def test_the_world_check_refuses_foreign_imports_and_missing_exports(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.wat"
    foreign.write_text(FOREIGN_IMPORT_WAT)
    with pytest.raises(BuildError, match=re.escape("evil:backdoor/api@1.0.0")):
        check_component(foreign)
    empty = tmp_path / "empty.wat"
    empty.write_text("(component)")
    with pytest.raises(
        BuildError, match=re.escape("missing export 'flowforge:connector/handler@0.1.0'")
    ):
        check_component(empty)
