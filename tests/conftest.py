"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

from flowforge.control.workspace import CONFIG_ENV
from tests.guests.build import build_guest


@pytest.fixture(autouse=True, scope="session")
def own_config_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A config folder (pool keys, the master key) per test process, unless one is set:
    pytest-xdist runs several processes, which must not share keys being created."""
    if CONFIG_ENV not in os.environ:
        os.environ[CONFIG_ENV] = str(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="session")
def python_guest() -> Path:
    """The Python test connector (tests/guests/python), built with componentize-py."""
    return build_guest("python").path


@pytest.fixture(scope="session")
def zig_guest() -> Path:
    """The Zig test connector (tests/guests/zig), built with zig + wasm-tools."""
    return build_guest("zig").path
