"""The `flowforge` command line."""

import click


@click.group()
def main() -> None:
    """FlowForge: self-hosted workflow automation with sandboxed connectors."""
