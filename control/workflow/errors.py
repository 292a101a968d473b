"""Workflow errors: each problem names the file, line and column, the step and the field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PathPart = str | int
NodePath = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column in the YAML source."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workflow, with everything the author needs to find it."""

    message: str
    file: str = "<workflow>"
    position: Position | None = None
    step: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts = [self.file if self.position is None else f"{self.file}:{self.position}"]
        if self.step is not None:
            parts.append(f"step {self.step!r}")
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.message])


class WorkflowInvalid(Exception):
    """A workflow that cannot be accepted; `problems` lists every problem found, in order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = f"the workflow has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


def format_path(path: Sequence[PathPart]) -> str:
    """`retry.max_attempts`, `network[1]`: a path as the author would write it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


__all__ = ["NodePath", "PathPart", "Position", "Problem", "WorkflowInvalid", "format_path"]
