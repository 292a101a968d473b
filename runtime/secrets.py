"""The secrets capability: a step reads only the secrets it was granted, and their values
never leave the sandbox in clear through logs, errors or outputs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

MASK = "***"


def _forms(value: str) -> set[str]:
    """The ways a value can show up in text a guest produced.

    Besides the value itself: as it appears inside a JSON string (escaped), and, for a
    value that is itself JSON string text, the string it encodes.
    """
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1]}
    try:
        decoded = json.loads(value)
    except ValueError:
        return forms
    if isinstance(decoded, str):
        forms.add(decoded)
    return forms


class Scrubber:
    """Replaces every granted secret value in a text with `***`."""

    def __init__(self, values: Mapping[str, str]) -> None:
        forms = {form for value in values.values() for form in _forms(value) if form}
        # Longest first, so a value that contains another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def json(self, document: str) -> str:
        """Mask secret values inside the strings of a JSON document, keeping it valid JSON.

        Masking the text itself would miss values that JSON escapes (a quote, a newline)
        and could break the document; walking the parsed value catches both.
        """
        if self._pattern is None:
            return document
        return json.dumps(self._walk(json.loads(document)), ensure_ascii=False)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        if isinstance(value, dict):
            return {self(key): self._walk(item) for key, item in value.items()}
        return value


@lru_cache(maxsize=256)
def _scrubber(values: frozenset[str]) -> Scrubber:
    # Compiling the mask pattern costs more than a whole small invocation; steps of a
    # workflow reuse the same few secrets, so each set of values is compiled once.
    return Scrubber({str(i): v for i, v in enumerate(sorted(values))})


class SecretGrants:
    """The secrets granted to one invocation, by name."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.scrub = _scrubber(frozenset(self._values.values()))
        self.reads: list[str] = []

    def read(self, name: str) -> tuple[bool, str]:
        """`(True, value)` for a granted name, else `(False, why)`; every read is recorded."""
        value = self._values.get(name)
        if value is None:
            return False, (
                f"secret {name!r} is not granted to this step; "
                f"grant it in the workflow (or --secret {name}=VALUE when running by hand)"
            )
        self.reads.append(name)
        return True, value
