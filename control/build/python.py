"""Python connectors, built with componentize-py.

The author's folder holds `app.py` with a `Handler` class implementing the world's
`handler` interface. Bindings are generated into a fresh folder for every build, because
`componentize-py bindings` refuses to write into one that exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from flowforge.control.build.errors import BuildError
from flowforge.control.build.toolchain import Tool, find_tool, run_tool
from flowforge.wit import WORLD

ENTRY_MODULE = "app"


def tools() -> list[Tool]:
    """The toolchain this language needs (its versions go into the cache key)."""
    return [find_tool("componentize-py")]


def build(
    source_dir: Path,
    wit_dir: Path,
    work: Path,
    tools: Mapping[str, Tool],
    progress: Callable[[str], None],
) -> Path:
    """Build `source_dir` into a component inside `work` with `tools` (from `tools()`);
    return its path."""
    if not (source_dir / f"{ENTRY_MODULE}.py").is_file():
        raise BuildError(f"{source_dir} has no {ENTRY_MODULE}.py (the connector's entry module)")
    componentize_py = str(tools["componentize-py"].executable)
    common = [componentize_py, "-q", "-d", str(wit_dir), "-w", WORLD]
    bindings = work / "bindings"
    output = work / "component.wasm"
    # componentize-py adds $VIRTUAL_ENV's site-packages to the guest's path; the component
    # must hold the author's code and nothing from whatever venv runs the build.
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}

    progress("python: generating bindings")
    run_tool(
        [*common, "bindings", str(bindings)], what="componentize-py bindings", cwd=work, env=env
    )
    progress("python: componentize (CPython into wasm; takes several seconds)")
    command = [
        *common,
        "componentize",
        # No WASI imports remain: the component needs nothing the world does not give.
        "--stub-wasi",
        "-p", str(bindings),
        "-p", str(source_dir),
        ENTRY_MODULE,
        "-o", str(output),
    ]  # fmt: skip
    try:
        run_tool(command, what=f"componentize-py componentize {source_dir}", cwd=work, env=env)
    except BuildError as exc:
        raise BuildError(exc.summary, _guest_traceback(exc.detail)) from None
    return output


def _guest_traceback(detail: str) -> str:
    """The error raised while importing the author's app, without the wrapper around it.

    componentize-py reports an app that fails to import as an AssertionError raised in
    its own console script; only the text after that prefix is about the author's code.
    """
    marker = "AssertionError: "
    if detail.startswith("Traceback") and marker in detail:
        return detail.split(marker, 1)[1].strip()
    return detail
