"""Zig connectors: `zig build-exe` to a core module, then `wasm-tools component embed/new`.

The author's folder holds `main.zig`, which declares `pub fn handle(...)` and imports the
SDK as the module `flowforge` (`connectors/sdk/zig/flowforge.zig`, shipped as
`flowforge.sdk`). The SDK holds the canonical-ABI glue once: it exports
`flowforge:connector/handler@0.1.0#invoke`, its `cabi_post_` twin and `cabi_realloc`, and
imports the host's functions from `flowforge:connector/host@0.1.0`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from flowforge.control.build.component import componentize_core
from flowforge.control.build.errors import BuildError
from flowforge.control.build.toolchain import Tool, find_tool, run_tool
from flowforge.sdk import sdk_dir

ENTRY_FILE = "main.zig"
SDK_MODULE = "flowforge"  # what a connector writes in `@import("flowforge")`
SDK_FILE = "flowforge.zig"


def tools() -> list[Tool]:
    """The toolchain this language needs (its versions go into the cache key)."""
    return [find_tool("zig"), find_tool("wasm-tools")]


def build(
    source_dir: Path,
    wit_dir: Path,
    work: Path,
    tools: Mapping[str, Tool],
    progress: Callable[[str], None],
) -> Path:
    """Build `source_dir` into a component inside `work` with `tools` (from `tools()`);
    return its path."""
    entry = source_dir / ENTRY_FILE
    if not entry.is_file():
        raise BuildError(f"{source_dir} has no {ENTRY_FILE} (the connector's entry file)")
    sdk = sdk_dir("zig") / SDK_FILE
    if not sdk.is_file():
        raise BuildError(f"the Zig SDK is missing: {sdk} (a broken flowforge installation)")
    zig = str(tools["zig"].executable)
    core = work / "core.wasm"

    progress("zig: compiling to a core module")
    run_tool(
        [
            zig, "build-exe",
            # Freestanding: the module imports nothing but the host interface.
            "-target", "wasm32-freestanding",
            # ReleaseFast over ReleaseSmall: twice the speed on JSON-heavy work (1,000 x 64
            # vectors: 22 ms against 43 ms) for about 80 KB more, still tiny as components go.
            "-fno-entry", "-rdynamic", "-O", "ReleaseFast", "-fstrip",
            # The SDK is the root module, so its exports are always analysed (a root that
            # only imports a module leaves that module's comptime exports unreferenced);
            # it calls the author's `handle` as `@import("connector")`, and the connector
            # sees the SDK as `@import("flowforge")`.
            "--dep", "connector", f"-Mroot={sdk}",
            "--dep", f"{SDK_MODULE}=root", f"-Mconnector={entry}",
            f"-femit-bin={core}",
        ],
        what=f"zig build-exe {entry}",
        cwd=work,  # zig writes its local cache into the working folder
    )  # fmt: skip
    progress("zig: wrapping the core module into a component")
    return componentize_core(core, wit_dir, work, tools["wasm-tools"])
