"""JavaScript connectors, built with componentize-qjs (QuickJS) from a pinned npm toolchain.

The author's folder holds `index.js`, an ES module exporting `handle(config, input)` (or a
ready `handler`). The builder stages it next to the SDK (importable as `"flowforge"`) and a
generated entry module that exports the world's `handler`, then runs componentize-qjs with
its synchronous runtime and WASI stubbed out, so the component imports only the host.

The toolchain is the npm lock file shipped in `flowforge.sdk`'s `javascript/toolchain/`,
installed with `npm ci` on first use into a folder keyed by the lock file's hash; only
Node.js 18+ (with npm) must be on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from flowforge.control.build.errors import BuildError, ToolchainError
from flowforge.control.build.toolchain import Tool, run_tool, trim
from flowforge.runtime.cache import cache_root
from flowforge.sdk import sdk_dir
from flowforge.wit import WORLD

ENTRY_FILE = "index.js"
SDK_MODULE = "flowforge.js"
COMPILER = "componentize-qjs"
MIN_NODE_MAJOR = 18

# Names the staged tree uses; an author's file may not collide with them.
_GENERATED_ENTRY = "__flowforge_entry__.js"
_SKIPPED_DIRS = frozenset({"node_modules", "dist", "__pycache__"})


class NodeMissing(ToolchainError):
    """Node.js or npm is absent or too old; the fix is installing Node.js, not a pip package."""

    def __init__(self, tool: str, problem: str) -> None:
        RuntimeError.__init__(
            self,
            f"{tool} {problem}; JavaScript connectors need Node.js {MIN_NODE_MAJOR}+ with npm "
            "(https://nodejs.org, or your system's package manager, e.g. `apt install nodejs npm`)",
        )
        self.tool = tool
        self.package = f"Node.js {MIN_NODE_MAJOR}+"


def toolchain_source() -> Path:
    """The folder holding the pinned `package.json` and `package-lock.json`."""
    return sdk_dir("javascript") / "toolchain"


def lock_hash() -> str:
    """The sha256 of the lock file: what names the installed toolchain and keys builds."""
    lock = toolchain_source() / "package-lock.json"
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def toolchain_root() -> Path:
    """Installed npm toolchains: `<cache root>/toolchains`."""
    return cache_root() / "toolchains"


def toolchain_dir() -> Path:
    """Where this lock file's toolchain is (or will be) installed."""
    return toolchain_root() / f"js-{lock_hash()[:16]}"


def _pinned_version() -> str:
    lock = json.loads((toolchain_source() / "package-lock.json").read_text(encoding="utf-8"))
    version: str = lock["packages"][f"node_modules/{COMPILER}"]["version"]
    return version


def tools() -> list[Tool]:
    """node and npm (found on PATH) and the pinned compiler (installed by `build` on first
    use, so a build-cache hit never waits for npm); versions go into the cache key."""
    node = _which("node")
    npm = _which("npm")
    compiler = toolchain_dir() / "node_modules" / COMPILER / "cli.mjs"
    return [
        # The compiler's output depends on the lock file, not on which Node runs it.
        Tool("node", node, "node"),
        Tool("npm", npm, "npm"),
        Tool(COMPILER, compiler, f"{COMPILER}@{_pinned_version()}+lock.{lock_hash()[:16]}"),
    ]


def _which(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise NodeMissing(name, "not found on PATH")
    return Path(found)


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
        raise BuildError(f"{source_dir} has no {ENTRY_FILE} (the connector's entry module)")
    node = tools["node"].executable
    _check_node(node)
    compiler = ensure_toolchain(tools["npm"].executable, progress)
    app = _stage(source_dir, work / "app")
    output = work / "component.wasm"
    progress(f"javascript: componentize-qjs {_pinned_version()} (QuickJS into wasm)")
    command = [
        str(node), str(compiler),
        "--wit", str(wit_dir),
        "--world", WORLD,
        "--js", str(app / _GENERATED_ENTRY),
        "--module-root", str(app),
        # The host calls are synchronous and wasmtime-py has no component-model async.
        "--sync",
        # No WASI imports remain: the component needs nothing the world does not give.
        "--stub-wasi",
        "-o", str(output),
    ]  # fmt: skip
    run_tool(command, what=f"componentize-qjs {source_dir / ENTRY_FILE}", cwd=work)
    if not output.is_file():
        raise BuildError(f"componentize-qjs wrote no component for {source_dir}")
    return output


def _stage(source_dir: Path, app: Path) -> Path:
    """The author's files, the SDK as the package `flowforge`, and the generated entry."""
    shutil.copytree(
        source_dir,
        app,
        ignore=lambda _dir, names: [n for n in names if n in _SKIPPED_DIRS or n.startswith(".")],
    )
    if (app / _GENERATED_ENTRY).exists():
        raise BuildError(f"{source_dir}: {_GENERATED_ENTRY} is a name the builder reserves")
    package = app / "node_modules" / "flowforge"
    package.mkdir(parents=True)
    shutil.copyfile(sdk_dir("javascript") / SDK_MODULE, package / "index.js")
    (package / "package.json").write_text(
        json.dumps({"name": "flowforge", "type": "module", "main": "index.js"}), encoding="utf-8"
    )
    (app / _GENERATED_ENTRY).write_text(
        "// Generated by flowforge: the world's handler export around index.js.\n"
        'import * as app from "./index.js";\n'
        'import { connector } from "flowforge";\n'
        "export const handler = connector(app);\n",
        encoding="utf-8",
    )
    return app


def _check_node(node: Path) -> None:
    version = run_tool([str(node), "--version"], what="node --version").strip()
    try:
        major = int(version.lstrip("v").split(".", 1)[0])
    except ValueError:
        raise NodeMissing(str(node), f"reported an unreadable version {version!r}") from None
    if major < MIN_NODE_MAJOR:
        raise NodeMissing(str(node), f"is {version}, too old")


def ensure_toolchain(npm: Path, progress: Callable[[str], None]) -> Path:
    """The compiler's entry script, installing the pinned toolchain first if needed.

    `npm ci` runs in a scratch folder next to the final one, which appears only by an
    atomic rename once the install is complete: a killed install is never used.
    """
    final = toolchain_dir()
    compiler = final / "node_modules" / COMPILER / "cli.mjs"
    if compiler.is_file():
        return compiler
    root = toolchain_root()
    root.mkdir(parents=True, exist_ok=True)
    progress(
        f"javascript: installing the pinned toolchain ({COMPILER} {_pinned_version()}) "
        f"with npm ci into {final} (once per machine)"
    )
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{final.name}-") as scratch:
        staging = Path(scratch) / "install"
        staging.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(toolchain_source() / name, staging / name)
        _npm_ci(npm, staging)
        if not (staging / "node_modules" / COMPILER / "cli.mjs").is_file():
            raise BuildError(f"npm ci finished but {COMPILER} is not in {staging}/node_modules")
        try:
            os.rename(staging, final)
        except OSError:
            # Another build installed the same lock file meanwhile; theirs is as good.
            if not compiler.is_file():
                raise
    progress(f"javascript: toolchain ready in {final}")
    return compiler


def _npm_ci(npm: Path, folder: Path) -> None:
    command = [
        str(npm), "ci",
        "--no-audit", "--no-fund", "--no-update-notifier",
        # The pinned packages ship prebuilt binaries; no install script needs to run.
        "--ignore-scripts",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, check=False, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"npm ci (installing the JavaScript toolchain) failed: {exc}") from exc
    if done.returncode != 0:
        raise BuildError(
            f"npm ci (installing the JavaScript toolchain) failed (exit {done.returncode}); "
            "is the npm registry reachable?",
            trim(done.stderr or done.stdout),
        )
