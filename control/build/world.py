"""Checks that a built component fits the `flowforge:connector` world.

The check is the runtime's own load check (one definition of the world, in
`flowforge.runtime.world`), so a build passes exactly when the sandbox will load it. Loading
compiles the component into the runtime's compile cache, so the first run after a build
maps the compiled artefact instead of compiling again.
"""

from __future__ import annotations

from pathlib import Path

from flowforge.control.build.errors import BuildError
from flowforge.runtime import CompileCache, LoadError
from flowforge.runtime.engine import get_engine
from flowforge.runtime.loader import load_component, read_source


def check_component(component: Path, cache: CompileCache | None = None) -> None:
    """Raise BuildError unless the sandbox would load `component`."""
    try:
        load_component(
            get_engine(), read_source(component), cache or CompileCache(), component.name
        )
    except LoadError as exc:
        raise BuildError(f"the component does not fit the connector world: {exc}") from None
