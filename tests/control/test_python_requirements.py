"""A Python connector's requirements.txt: pinned pure-Python wheels only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowforge.control.build import BuildError, build_component
from flowforge.control.build.python_deps import check_pure, read_pins


def test_pins_are_read_and_comments_skipped(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# tools\njmespath==1.0.1  # JSON queries\n\ntzdata==2025.2\n")
    assert read_pins(requirements) == ["jmespath==1.0.1", "tzdata==2025.2"]


@pytest.mark.parametrize(
    "line", ["jmespath", "jmespath>=1.0", "--index-url https://x.example", "git+https://x/y.git"]
)
def test_anything_but_an_exact_pin_is_refused(tmp_path: Path, line: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"tzdata==2025.2\n{line}\n")
    with pytest.raises(BuildError, match="name==version") as caught:
        read_pins(requirements)
    assert "line 2" in caught.value.detail


def test_a_compiled_wheel_is_refused(tmp_path: Path) -> None:
    info = tmp_path / "fastthing-1.0.dist-info"
    info.mkdir()
    (info / "WHEEL").write_text(
        "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n"
    )
    (tmp_path / "fastthing").mkdir()
    (tmp_path / "fastthing" / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    with pytest.raises(BuildError, match="pure-Python") as caught:
        check_pure(tmp_path)
    assert "fastthing-1.0 (not a purelib wheel)" in caught.value.detail
    assert "_speedups" in caught.value.detail


@pytest.mark.timeout(300)
def test_a_package_with_only_compiled_wheels_fails_the_build(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(Path(__file__).resolve().parents[1] / "guests" / "python", source)
    # PyYAML publishes compiled wheels and an sdist, no pure wheel.
    (source / "requirements.txt").write_text("PyYAML==6.0.2\n")
    with pytest.raises(BuildError, match="pure-Python wheels") as caught:
        build_component(source, "python", cache_dir=tmp_path / "cache")
    assert "PyYAML==6.0.2" in str(caught.value)


@pytest.mark.timeout(300)
def test_an_app_without_a_handler_is_a_clear_build_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text("VALUE = 1\n")
    with pytest.raises(BuildError, match="def handle") as caught:
        build_component(source, "python", cache_dir=tmp_path / "cache")
    assert "app.py defines no connector" in caught.value.detail
