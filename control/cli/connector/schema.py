"""`flowforge connector schema`: the JSON Schema of `connector.toml`, for docs and editors.

The committed copy is `docs/connector-manifest.schema.json`; a test fails when it drifts
from the model, and this command regenerates it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import click

from flowforge.runtime.manifest import manifest_json_schema

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
REGENERATE: Final = "flowforge connector schema --write docs/connector-manifest.schema.json"


def schema_text() -> str:
    """The manifest's JSON Schema as the committed file holds it (stable, diff-friendly)."""
    schema = {"$schema": DRAFT, **manifest_json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@click.command("schema", hidden=True)
@click.option(
    "--write",
    "target",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the schema to this file instead of printing it.",
)
def schema(target: Path | None) -> None:
    """Print the JSON Schema of connector.toml (Draft 2020-12).

    \b
    Example (after changing runtime/manifest.py):
      flowforge connector schema --write docs/connector-manifest.schema.json
    """
    text = schema_text()
    if target is None:
        click.echo(text, nl=False)
        return
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}", err=True)
