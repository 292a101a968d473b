"""Builds the test guests (real connector sources) through the project's own builder.

Builds are cached by source hash, so only the first run on a machine pays for
componentize-py (several seconds); later runs cost a hash of the sources.
"""

from __future__ import annotations

from pathlib import Path

from flowforge.control.build import BuiltComponent, Language, build_component
from flowforge.control.build.cache import default_cache_dir

GUESTS_DIR = Path(__file__).resolve().parent
PYTHON_GUEST_DIR = GUESTS_DIR / "python"
ZIG_GUEST_DIR = GUESTS_DIR / "zig"


def guest_cache_dir() -> Path:
    """The user's build cache, so a rerun on the same machine (CI's fresh clone too)
    skips the toolchains: `$FLOWFORGE_CACHE_DIR/builds` or `~/.cache/flowforge/builds`."""
    return default_cache_dir()


def build_guest(language: Language) -> BuiltComponent:
    """Build (or fetch from the cache) the test guest written in `language`."""
    source = PYTHON_GUEST_DIR if language == "python" else ZIG_GUEST_DIR
    return build_component(source, language, cache_dir=guest_cache_dir())
