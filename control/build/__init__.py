"""Builds connector sources into WebAssembly components, cached by what went into them.

`build_component(source_dir, language)` (python, javascript, zig or c) runs the language's
toolchain (pinned, installed by the project from PyPI or npm), checks the result against
the `flowforge:connector` world and keeps it in a content-addressed cache, so building
unchanged sources again costs a hash of the sources and nothing more.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from flowforge.control.build.cache import (
    BuildCache,
    build_key,
    default_cache_dir,
    file_sha256,
    tree_inputs,
)
from flowforge.control.build.errors import BuildError, ToolchainError
from flowforge.control.build.toolchain import Tool
from flowforge.control.build.world import check_component
from flowforge.sdk import sdk_dir
from flowforge.wit import wit_dir

__all__ = ["BuildError", "BuiltComponent", "Language", "ToolchainError", "build_component"]

Language = Literal["python", "javascript", "zig", "c"]
LANGUAGES: tuple[Language, ...] = ("python", "javascript", "zig", "c")


class _LanguageBuilder(Protocol):
    def tools(self) -> list[Tool]: ...

    def build(
        self,
        source_dir: Path,
        wit_dir: Path,
        work: Path,
        tools: Mapping[str, Tool],
        progress: Callable[[str], None],
    ) -> Path: ...


def _builder(language: str) -> _LanguageBuilder:
    """The language's module, `flowforge.control.build.<language>` (one per language)."""
    if language not in LANGUAGES:
        raise BuildError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    module: _LanguageBuilder = importlib.import_module(f"flowforge.control.build.{language}")
    return module


@dataclass(frozen=True, slots=True)
class BuiltComponent:
    """A component file in the build cache and the sha256 of its bytes."""

    path: Path
    sha256: str
    cached: bool


def build_component(
    source_dir: Path,
    language: Language,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuiltComponent:
    """Build the connector in `source_dir`, or return the cached build of identical inputs.

    Raises ToolchainError when the language's toolchain is not installed, and BuildError
    when the sources do not compile or the result does not fit the connector world.
    """
    builder = _builder(language)
    source_dir = source_dir.resolve()
    if not source_dir.is_dir():
        raise BuildError(f"{source_dir} is not a folder")
    say = progress or _quiet
    # The language's own toolchain first, so a missing one is the error the author sees.
    tools = {tool.name: tool for tool in builder.tools()}
    wit = wit_dir()
    key = build_key(
        language=language,
        tool_versions=(f"{t.name}:{t.version}" for t in tools.values()),
        # Only the .wit files: the folder is also a Python package (its __init__.py).
        inputs=[
            *tree_inputs("src", source_dir),
            *tree_inputs("wit", wit, "*.wit"),
            *tree_inputs("sdk", sdk_dir(language)),  # the glue compiled into every connector
            # The builders themselves: a changed compiler flag must not serve an old build.
            *tree_inputs("builder", Path(__file__).parent, "*.py"),
        ],
    )
    cache = BuildCache(cache_dir if cache_dir is not None else default_cache_dir())

    hit = cache.lookup(key)
    if hit is not None:
        say(f"{language}: cached {hit}")
        return BuiltComponent(hit, file_sha256(hit), cached=True)

    started = time.monotonic()
    with cache.work_dir() as scratch:
        built = builder.build(source_dir, wit, Path(scratch), tools, say)
        say(f"{language}: checking the component against the connector world")
        check_component(built)
        digest = file_sha256(built)
        path = cache.store(key, built)
    say(f"{language}: built {path} in {time.monotonic() - started:.1f}s")
    return BuiltComponent(path, digest, cached=False)


def _quiet(_message: str) -> None:
    pass
