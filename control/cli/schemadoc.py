"""The hidden `schema` command of a command group: print or rewrite a published schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


def schema_command(text: Callable[[], str], subject: str, regenerate: str) -> click.Command:
    """A `schema [--write FILE]` command for the JSON Schema of `subject` (e.g. connector.toml)."""

    @click.command("schema", hidden=True)
    @click.option(
        "--write",
        "target",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Write the schema to this file instead of printing it.",
    )
    def schema(target: Path | None) -> None:
        document = text()
        if target is None:
            click.echo(document, nl=False)
            return
        target.write_text(document, encoding="utf-8")
        click.echo(f"wrote {target}", err=True)

    schema.help = (
        f"Print the JSON Schema of {subject} (Draft 2020-12).\n\n"
        f"\b\nExample (after changing its model):\n  {regenerate}"
    )
    return schema


__all__ = ["schema_command"]
