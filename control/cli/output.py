"""One way to print a command's result: `--output table|json|yaml`.

A command builds one plain document (dicts, lists, strings, numbers) for scripts and,
for people, a `Table` or a few lines. `emit` prints whichever `--output` asks for, so
the JSON and YAML always hold the same document; `fail_as` reports an error in the same
format. Streams (watch, logs) print one document per item: a JSON line each, or YAML
documents separated by `---`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar

import click
import yaml

from .options import EXIT_USAGE, fail, output_formats

FORMATS: Final = ("table", "json", "yaml")

F = TypeVar("F", bound=Callable[..., Any])


def rendered_output_option(func: F) -> F:
    """`--output table|json|yaml` for the commands that print through `emit`."""
    return output_formats(*FORMATS)(func)


@dataclass(frozen=True)
class Table:
    """Rows under a header, columns as wide as their widest cell; the last column is not
    padded (it often holds free text)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    empty: str = "(none)"

    def lines(self) -> list[str]:
        if not self.rows:
            return [self.empty]
        cells = [[str(c) for c in self.columns]]
        cells += [["" if v is None else str(v) for v in row] for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        out = []
        for row in cells:
            padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
            out.append("  ".join([*padded, row[-1]]).rstrip())
        return out


Human = Table | Iterable[str] | Callable[[], Table | Iterable[str]]


def render(output: str, document: Any, human: Human) -> str:
    """The text `--output` asks for: the document as JSON or YAML, else the human form."""
    if output == "json":
        return json.dumps(document, ensure_ascii=False)
    if output == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).rstrip("\n")
    shown = human() if callable(human) else human
    lines = shown.lines() if isinstance(shown, Table) else list(shown)
    return "\n".join(lines)


def emit(output: str, document: Any, human: Human) -> None:
    click.echo(render(output, document, human))


def emit_item(output: str, document: Any, human: str) -> None:
    """One item of a stream: a JSON line, a YAML document, or one line of text."""
    if output == "yaml":
        click.echo("---")
    click.echo(render(output, document, [human]))


def fail_as(output: str, message: str, *, code: int = EXIT_USAGE, kind: str = "") -> NoReturn:
    """End the command with an error: on stderr always, and as the document
    `{"ok": false, "error": {kind, message}}` on stdout for json and yaml."""
    if output == "yaml":
        click.echo(
            render(
                "yaml", {"ok": False, "error": {"kind": kind or "error", "message": message}}, []
            )
        )
    fail(message, code=code, as_json=output == "json", kind=kind)


__all__ = ["FORMATS", "Table", "emit", "emit_item", "fail_as", "render", "rendered_output_option"]
