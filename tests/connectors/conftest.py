"""Fixtures the connector tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowforge.runtime import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox per test module, closed after it."""
    box = Sandbox()
    yield box
    box.close()
