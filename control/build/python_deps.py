"""A Python connector's pure-Python dependencies, from its `requirements.txt`.

The guest is CPython compiled to WebAssembly: a wheel with compiled extensions cannot run
in it, so only pure-Python wheels are installed, with pip from the interpreter running the
build, into the build's own work folder. Every line must pin one exact version
(`name==version`) so that the file, which is part of the source hash, fixes what goes in.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

from flowforge.control.build.errors import BuildError
from flowforge.control.build.toolchain import run_tool

REQUIREMENTS_FILE: Final = "requirements.txt"
# The CPython that componentize-py 0.25 embeds; pip checks Requires-Python against it.
GUEST_PYTHON_VERSION: Final = "3.14"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")


def read_pins(path: Path) -> list[str]:
    """The `name==version` lines of a requirements file (comments and blanks skipped).

    Anything else (ranges, URLs, pip options such as --index-url) is refused: it would
    make the build depend on more than the file says.
    """
    pins: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if _PIN.match(line):
            pins.append(line)
        else:
            problems.append(f"  line {number}: {raw.strip()!r}")
    if problems:
        raise BuildError(
            f"{path}: every requirement must pin one version as name==version",
            "\n".join(problems),
        )
    return pins


def install(source_dir: Path, work: Path) -> Path | None:
    """Install the connector's requirements into `work/deps`; None when it has none."""
    requirements = source_dir / REQUIREMENTS_FILE
    if not requirements.is_file():
        return None
    pins = read_pins(requirements)
    target = work / "deps"
    target.mkdir()
    if not pins:
        return target
    command = [
        sys.executable, "-m", "pip", "install",
        "--target", str(target),
        "--no-deps", "--only-binary=:all:", "--no-input", "--disable-pip-version-check",
        "--quiet",
        # Ask for wheels that run anywhere: pip then picks a package's pure wheel even
        # where it also publishes compiled ones for the build machine.
        "--implementation", "py", "--abi", "none", "--platform", "any",
        "--python-version", GUEST_PYTHON_VERSION,
        *pins,
    ]  # fmt: skip
    try:
        run_tool(command, what=f"pip install ({REQUIREMENTS_FILE})")
    except BuildError as exc:
        raise BuildError(
            f"{requirements}: could not install {', '.join(pins)} as pure-Python wheels "
            "(py3-none-any). Connectors run CPython compiled to WebAssembly, which cannot "
            "load compiled extensions; use a pure-Python package or version",
            exc.detail,
        ) from None
    check_pure(target)
    return target


def check_pure(target: Path) -> None:
    """Refuse any installed wheel that is not pure Python (belt and braces: pip was asked
    for pure wheels only, but a wheel's tags are its author's claim)."""
    impure: list[str] = []
    for wheel_file in sorted(target.glob("*.dist-info/WHEEL")):
        package = wheel_file.parent.name.removesuffix(".dist-info")
        text = wheel_file.read_text(encoding="utf-8", errors="replace")
        if "Root-Is-Purelib: true" not in text:
            impure.append(f"{package} (not a purelib wheel)")
    for suffix in ("*.so", "*.pyd", "*.dylib"):
        impure.extend(f"{p.relative_to(target)} (compiled code)" for p in target.rglob(suffix))
    if impure:
        raise BuildError(
            "requirements.txt: only pure-Python wheels can run in a connector",
            "\n".join(f"  {item}" for item in impure),
        )
