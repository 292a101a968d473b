"""Zig connectors: `zig build-exe` to a core module, then `wasm-tools component embed/new`.

The author's folder holds `main.zig`, which exports the canonical-ABI functions of the
world by hand (`flowforge:connector/handler@0.1.0#invoke`, its `cabi_post_` twin and
`cabi_realloc`) and imports the host's functions from `flowforge:connector/host@0.1.0`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from flowforge.control.build.errors import BuildError
from flowforge.control.build.toolchain import Tool, find_tool, run_tool
from flowforge.wit import WORLD

ENTRY_FILE = "main.zig"


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
    zig = str(tools["zig"].executable)
    wasm_tools = str(tools["wasm-tools"].executable)
    core = work / "core.wasm"
    embedded = work / "embedded.wasm"
    output = work / "component.wasm"

    progress("zig: compiling to a core module")
    run_tool(
        [
            zig, "build-exe", str(entry),
            # Freestanding: the module imports nothing but the host interface.
            "-target", "wasm32-freestanding",
            "-fno-entry", "-rdynamic", "-O", "ReleaseSmall", "-fstrip",
            f"-femit-bin={core}",
        ],
        what=f"zig build-exe {entry}",
        cwd=work,  # zig writes its local cache into the working folder
    )  # fmt: skip
    progress("zig: wrapping the core module into a component")
    run_tool(
        [wasm_tools, "component", "embed", str(wit_dir), "--world", WORLD, str(core),
         "-o", str(embedded)],
        what="wasm-tools component embed",
    )  # fmt: skip
    run_tool(
        [wasm_tools, "component", "new", str(embedded), "-o", str(output)],
        what="wasm-tools component new",
    )
    return output
