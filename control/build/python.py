"""Python connectors, built with componentize-py.

The author's folder holds `app.py` with a `handle(config, input)` function (or one marked
`@connector`), written against the guest SDK `flowforge_connector`
(`connectors/sdk/python/`), and optionally a `requirements.txt` of pinned pure-Python
packages. The component is built from the SDK's `flowforge_entry` module, which imports
`app` and exports the `Handler` class componentize-py needs; an `app.py` that defines its
own `Handler` keeps it. Bindings are generated into a fresh folder for every build,
because `componentize-py bindings` refuses to write into one that exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from flowforge.control.build import python_deps
from flowforge.control.build.errors import BuildError
from flowforge.control.build.toolchain import Tool, find_tool, run_tool
from flowforge.sdk import sdk_dir
from flowforge.wit import WORLD

ENTRY_MODULE = "app"  # the author's module
SDK_ENTRY_MODULE = "flowforge_entry"  # what componentize-py builds; imports `app`
SDK_PACKAGE = "flowforge_connector"
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "dist", "*.wasm")


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

    # componentize-py imports the app at build time and writes __pycache__ next to it: it
    # imports a copy, so the author's folder stays as they left it.
    source = work / "src"
    shutil.copytree(source_dir, source, ignore=_NOT_SOURCE)
    sdk = _copy_sdk(work / "sdk")
    if (source_dir / python_deps.REQUIREMENTS_FILE).is_file():
        progress(f"python: installing {python_deps.REQUIREMENTS_FILE} (pure-Python wheels)")
    deps = python_deps.install(source_dir, work)

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
        "-p", str(sdk),
        *(["-p", str(deps)] if deps is not None else []),
        "-p", str(source),
        SDK_ENTRY_MODULE,
        "-o", str(output),
    ]  # fmt: skip
    try:
        run_tool(command, what=f"componentize-py componentize {source_dir}", cwd=work, env=env)
    except BuildError as exc:
        raise BuildError(exc.summary, _guest_traceback(exc.detail)) from None
    return output


def _copy_sdk(target: Path) -> Path:
    """Only the SDK's code goes on the guest's path (not its template or caches)."""
    source = sdk_dir("python")
    if not (source / SDK_PACKAGE).is_dir():
        raise BuildError(f"the Python guest SDK is missing: no {source / SDK_PACKAGE}")
    shutil.copytree(source / SDK_PACKAGE, target / SDK_PACKAGE, ignore=_NOT_SOURCE)
    shutil.copy2(source / f"{SDK_ENTRY_MODULE}.py", target / f"{SDK_ENTRY_MODULE}.py")
    return target


def _guest_traceback(detail: str) -> str:
    """The error raised while importing the author's app, without the wrapper around it.

    componentize-py reports an app that fails to import as an AssertionError raised in
    its own console script; only the text after that prefix is about the author's code.
    """
    marker = "AssertionError: "
    if detail.startswith("Traceback") and marker in detail:
        return detail.split(marker, 1)[1].strip()
    return detail
