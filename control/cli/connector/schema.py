"""`flowforge connector schema`: the JSON Schema of `connector.toml`, for docs and editors.

The committed copy is `docs/connector-manifest.schema.json`; a test fails when it drifts
from the model, and this command regenerates it.
"""

from __future__ import annotations

from typing import Final

from flowforge.control.schemadoc import schema_document
from flowforge.runtime.manifest import manifest_json_schema

from ..schemadoc import schema_command

REGENERATE: Final = "flowforge connector schema --write docs/connector-manifest.schema.json"


def schema_text() -> str:
    """The manifest's JSON Schema as the committed file holds it (stable, diff-friendly)."""
    return schema_document(manifest_json_schema())


schema = schema_command(schema_text, "connector.toml", REGENERATE)
