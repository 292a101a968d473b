"""`flowforge workflow ...`: workflow files and their versions."""

from __future__ import annotations

import click

from flowforge.control.workflow.spec import REGENERATE, workflow_schema_text

from .schemadoc import schema_command


@click.group()
def workflow() -> None:
    """Submit, list, show and compare workflow versions."""


workflow.add_command(schema_command(workflow_schema_text, "a workflow file", REGENERATE))
