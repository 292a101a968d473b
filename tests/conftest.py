"""Shared pytest fixtures."""

from pathlib import Path

import pytest

from tests.guests.build import build_guest


@pytest.fixture(scope="session")
def python_guest() -> Path:
    """The Python test connector (tests/guests/python), built with componentize-py."""
    return build_guest("python").path


@pytest.fixture(scope="session")
def zig_guest() -> Path:
    """The Zig test connector (tests/guests/zig), built with zig + wasm-tools."""
    return build_guest("zig").path
