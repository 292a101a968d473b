"""Ships the `flowforge:connector` WIT package with the distribution.

Toolchains read the `.wit` files in this folder; this module only lets Python
locate them with `importlib.resources`.
"""

from importlib.resources import files
from pathlib import Path

WORLD = "flowforge:connector/connector@0.1.0"


def wit_dir() -> Path:
    """The folder holding `connector.wit`, for guest toolchains."""
    return Path(str(files(__name__)))
