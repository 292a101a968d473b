"""The `flowforge` command line."""

import click

from .connector import connector


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowforge")
def main() -> None:
    """FlowForge: self-hosted workflow automation with sandboxed connectors.

    \b
    Example:
      flowforge connector run examples/hello.wat --input '{"name": "Ada"}'
    """


main.add_command(connector)
