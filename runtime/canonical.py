"""Canonical JSON: the one byte form of a JSON value that FlowForge signs and hashes.

Sorted keys, no insignificant whitespace, UTF-8 (non-ASCII written as itself, not escaped),
no NaN or infinities. Two equal values always have the same bytes, so a signature or a
digest over them means the value, not one spelling of it.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value; ValueError for NaN/infinity or non-JSON types."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def is_canonical_json(data: bytes) -> bool:
    """Whether `data` is exactly the canonical form of the JSON value it spells."""
    try:
        value = json.loads(data.decode("utf-8"))
        return canonical_json(value) == data
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
