"""Ships the guest SDKs and `connector new` templates with the distribution.

`connectors/sdk/<language>/` holds the glue written once per language (JSON in and out,
failures with the WIT error kinds, `secret()`, `fetch()`, logging) and, in `template/`,
the files `flowforge connector new` copies. This module only locates them.
"""

from importlib.resources import files
from pathlib import Path


def sdk_dir(language: str) -> Path:
    """The SDK folder of `language` (it may not exist for a language without one)."""
    return Path(str(files(__name__))) / language


def template_dir(language: str) -> Path:
    """The `connector new` template of `language`."""
    return sdk_dir(language) / "template"
