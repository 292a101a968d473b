"""`flowforge connector ...`: author, build, test and run connectors.

Each command lives in its own module and is registered here.
"""

import click

from .build import build
from .new import new
from .pack import pack_command
from .run import run
from .schema import schema
from .sign import sign
from .test import test
from .verify import verify


@click.group()
def connector() -> None:
    """Create, build, test and run connector components."""


connector.add_command(run)
connector.add_command(new)
connector.add_command(build)
connector.add_command(schema)
connector.add_command(test)
connector.add_command(pack_command)
connector.add_command(sign)
connector.add_command(verify)
