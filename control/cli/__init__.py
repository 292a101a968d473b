"""The `flowforge` command line."""

import click

from .audit import audit
from .connector import connector
from .keys import keys
from .marketplace import marketplace
from .run import run
from .secret import secret
from .server import server
from .status import status
from .token import token
from .triggers import triggers
from .trust import trust
from .worker import worker
from .workflow import workflow


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowforge")
def main() -> None:
    """FlowForge: self-hosted workflow automation with sandboxed connectors.

    \b
    Example:
      flowforge connector run examples/hello.wat --input '{"name": "Ada"}'
    """


main.add_command(audit)
main.add_command(connector)
main.add_command(keys)
main.add_command(marketplace)
main.add_command(run)
main.add_command(secret)
main.add_command(server)
main.add_command(status)
main.add_command(token)
main.add_command(triggers)
main.add_command(trust)
main.add_command(worker)
main.add_command(workflow)
