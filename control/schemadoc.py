"""Published JSON Schemas (`docs/*.schema.json`): one way to render them, so a test can
compare the committed file with the model byte for byte and a command can rewrite it."""

from __future__ import annotations

import json
from typing import Any, Final

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"


def schema_document(schema: dict[str, Any]) -> str:
    """A model's JSON Schema as a committed document: Draft 2020-12, indented, newline-ended."""
    document = {"$schema": DRAFT, **schema}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


__all__ = ["DRAFT", "schema_document"]
