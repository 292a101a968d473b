"""Where FlowForge keeps a user's state: the workspace (trust store, lock file, installed
packages, registry and run database) and the configuration folder (signing keys, the
secrets master key, worker pool keys).

The one place these paths are resolved; the runtime is handed paths, never looks them up.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowforge.runtime.trust import TRUST_FILE

WORKSPACE_ENV = "FLOWFORGE_WORKSPACE"
CONFIG_ENV = "FLOWFORGE_CONFIG_DIR"


def workspace_dir(explicit: Path | None = None) -> Path:
    """`--workspace DIR`, else `$FLOWFORGE_WORKSPACE`, else `$XDG_DATA_HOME/flowforge`
    (`~/.local/share/flowforge`)."""
    if explicit is not None:
        return explicit
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        return Path(env)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "flowforge"


def trust_store_path(workspace: Path) -> Path:
    return workspace / TRUST_FILE


def config_dir() -> Path:
    """`$FLOWFORGE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/flowforge` (`~/.config/flowforge`)."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "flowforge"
