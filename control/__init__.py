"""The control plane: workflows, scheduling, storage, APIs and the CLI."""
