"""C connectors: `zig cc` (clang with wasi-libc, from the `ziglang` wheel) to a core module,
then `wasm-tools component embed/new`.

The author's folder holds `main.c` (and any other `.c` files beside it), which defines
`ff_result handle(ff_ctx *, const ff_json *, const ff_json *)` from `flowforge.h`. The SDK
(`connectors/sdk/c/`, shipped as `flowforge.sdk`) is compiled into every connector: it holds
the canonical-ABI glue once (exports `flowforge:connector/handler@0.1.0#invoke`, its
`cabi_post_` twin and `cabi_realloc`; imports the host's functions) and a JSON library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from flowforge.control.build.component import componentize_core
from flowforge.control.build.errors import BuildError
from flowforge.control.build.toolchain import Tool, find_tool, run_tool
from flowforge.sdk import sdk_dir

ENTRY_FILE = "main.c"
SDK_SOURCES = ("flowforge.c", "flowforge_json.c")

# wasm32-wasi in reactor mode links wasi-libc (malloc, snprintf, strtod) without a `main`;
# a module that uses only those functions keeps no WASI imports, so the component imports
# nothing but the host interface. `_initialize` (libc's constructors) becomes the
# component's start function.
_COMPILE_FLAGS = (
    "-target", "wasm32-wasi", "-mexec-model=reactor",
    "-std=c11", "-Os", "-Wall", "-Wextra",
    # A 1 MiB stack (zig cc would reserve 16): the JSON parser bounds its recursion.
    "-Wl,-z,stack-size=1048576", "-Wl,--gc-sections", "-Wl,--strip-all",
)  # fmt: skip
_WASI_IMPORT = "wasi_snapshot_preview1"


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
    if not (source_dir / ENTRY_FILE).is_file():
        raise BuildError(f"{source_dir} has no {ENTRY_FILE} (the connector's entry file)")
    sdk = sdk_dir("c")
    sdk_sources = [sdk / name for name in SDK_SOURCES]
    missing = [str(path) for path in sdk_sources if not path.is_file()]
    if missing:
        raise BuildError(f"the C SDK is missing {', '.join(missing)} (a broken installation)")
    sources = sorted(source_dir.glob("*.c"))
    core = work / "core.wasm"

    progress(f"c: compiling {len(sources)} file(s) with the SDK to a core module")
    run_tool(
        [
            str(tools["zig"].executable), "cc", *_COMPILE_FLAGS,
            "-I", str(sdk), "-I", str(source_dir),
            *map(str, sources), *map(str, sdk_sources),
            "-o", str(core),
        ],
        what=f"zig cc {source_dir / ENTRY_FILE}",
        cwd=work,  # zig writes its local cache into the working folder
    )  # fmt: skip
    progress("c: wrapping the core module into a component")
    try:
        return componentize_core(core, wit_dir, work, tools["wasm-tools"])
    except BuildError as exc:
        if _WASI_IMPORT.encode() not in core.read_bytes():
            raise
        # wasm-tools asks for a WASI adapter; what the author needs is what to change.
        raise BuildError(
            "the connector calls libc functions that need WASI (stdio, files, clocks or "
            "random, e.g. printf or time), which connectors do not get: log with ff_log "
            "and format with snprintf or ff_arena_printf instead",
            exc.detail,
        ) from None
