"""Workflows: the YAML spec, its validation and its immutable, pinned versions.

`load_spec(path)` reads a file (WorkflowInvalid lists each problem as file:line:col),
`validate(spec, resolver)` checks it against the installed connectors and returns the
pinned `WorkflowVersion`; `evaluate_input` / `evaluate_when` evaluate a step's
expressions against {"inputs": ..., "steps": {id: {"output": ...}}}.
"""

from .errors import Position, Problem, WorkflowInvalid
from .expressions import ExpressionError, evaluate_input, evaluate_when
from .loader import load_spec, load_spec_text, spec_from_data
from .plan import (
    APPROVAL_OUTPUT_SCHEMA,
    ApprovalPolicy,
    Grants,
    PinnedConnector,
    PlannedStep,
    RetryPolicy,
    WorkflowVersion,
    is_finished,
    ready_steps,
)
from .resolver import (
    ResolvedConnector,
    ResolveError,
    Resolver,
    StaticResolver,
    WorkspaceResolver,
)
from .spec import WorkflowSpec, workflow_json_schema, workflow_schema_text
from .validate import input_problems, validate
from .version import diff

__all__ = [
    "APPROVAL_OUTPUT_SCHEMA",
    "ApprovalPolicy",
    "ExpressionError",
    "Grants",
    "PinnedConnector",
    "PlannedStep",
    "Position",
    "Problem",
    "ResolveError",
    "ResolvedConnector",
    "Resolver",
    "RetryPolicy",
    "StaticResolver",
    "WorkflowInvalid",
    "WorkflowSpec",
    "WorkflowVersion",
    "WorkspaceResolver",
    "diff",
    "evaluate_input",
    "evaluate_when",
    "input_problems",
    "is_finished",
    "load_spec",
    "load_spec_text",
    "ready_steps",
    "spec_from_data",
    "validate",
    "workflow_json_schema",
    "workflow_schema_text",
]
