"""Where each node of a workflow file is: the bridge from a data path to a line and column.

Validation works on data paths (`("steps", "fetch", "retry", "max_attempts")`); the
source map turns one into a `Problem` that names the file position, the step and the field.
A spec built in code has an empty map, and its problems simply carry no position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import NodePath, PathPart, Position, Problem, format_path


class SourceMap:
    """Positions of the value (and, for mapping entries, the key) at each data path."""

    def __init__(
        self,
        file: str = "<workflow>",
        values: Mapping[NodePath, Position] | None = None,
        keys: Mapping[NodePath, Position] | None = None,
    ) -> None:
        self.file = file
        self._values = dict(values or {})
        self._keys = dict(keys or {})

    def position(self, path: Sequence[PathPart], *, key: bool = False) -> Position | None:
        """The position of `path`, or of its nearest ancestor the file spells."""
        here = tuple(path)
        if key and here in self._keys:
            return self._keys[here]
        while True:
            found = self._values.get(here)
            if found is not None or not here:
                return found
            here = here[:-1]

    def problem(
        self,
        path: Sequence[PathPart],
        message: str,
        *,
        key: bool = False,
        at: Position | None = None,
    ) -> Problem:
        """A problem at `path`: under `steps.<id>` it names the step and the field within."""
        where = at or self.position(path, key=key)
        parts = tuple(path)
        if len(parts) >= 2 and parts[0] == "steps" and isinstance(parts[1], str):
            return Problem(message, self.file, where, parts[1], format_path(parts[2:]) or None)
        return Problem(message, self.file, where, None, format_path(parts) or None)


__all__ = ["SourceMap"]
