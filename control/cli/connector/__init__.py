"""`flowforge connector ...`: author, build, test and run connectors.

Each command lives in its own module and is registered here.
"""

import click

from .run import run


@click.group()
def connector() -> None:
    """Create, build, test and run connector components."""


connector.add_command(run)
