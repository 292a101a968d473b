"""Wrapping a core WebAssembly module into a component of the connector world.

The languages without a componentizing toolchain of their own (Zig, C) compile to a core
module that exports the canonical-ABI functions by hand; `wasm-tools component embed` adds
the world's type information to it and `component new` turns it into a component.
"""

from __future__ import annotations

from pathlib import Path

from flowforge.control.build.toolchain import Tool, run_tool
from flowforge.wit import WORLD


def componentize_core(core: Path, wit_dir: Path, work: Path, wasm_tools: Tool) -> Path:
    """The component made from the core module `core`, written inside `work`."""
    embedded = work / "embedded.wasm"
    output = work / "component.wasm"
    tool = str(wasm_tools.executable)
    run_tool(
        [tool, "component", "embed", str(wit_dir), "--world", WORLD, str(core),
         "-o", str(embedded)],
        what="wasm-tools component embed",
    )  # fmt: skip
    run_tool([tool, "component", "new", str(embedded), "-o", str(output)],
             what="wasm-tools component new")  # fmt: skip
    return output
