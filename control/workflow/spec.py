"""The workflow spec (YAML) as pydantic models: what a workflow author writes.

`WorkflowSpec` checks the form of each field (names, ranges, durations, cron expressions,
grant syntax); `validate.py` checks what needs the whole workflow and the installed
connectors (references, cycles, port schemas, grants against manifests). Its JSON Schema
is published as `docs/workflow.schema.json`.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Final, Literal

import jsonschema
from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from flowforge.control.schemadoc import schema_document
from flowforge.marketplace.semver import Range, VersionError
from flowforge.runtime.network import GrantError, HostPattern
from flowforge.runtime.outcome import StopReason
from flowforge.runtime.values import ErrorKind

from .source import SourceMap

JsonSchema = dict[str, Any]
SCHEMA_DOC: Final = "docs/workflow.schema.json"
REGENERATE: Final = f"flowforge workflow schema --write {SCHEMA_DOC}"

# Step ids are JMESPath identifiers, so `steps.<id>.output` needs no quoting.
STEP_ID: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_CONNECTOR = r"[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9-]{0,62}"
_USES: Final = re.compile(rf"^({_CONNECTOR})@(\S.*)$")
_NAME: Final = r"^[a-z0-9][a-z0-9._-]{0,99}$"
_PROJECT_SECRET: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_CONNECTOR_SECRET: Final = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_POOL: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_WEBHOOK_PATH: Final = r"^/[A-Za-z0-9._~/-]*$"
# A NATS subject: dot-separated tokens; `*` matches one token and a final `>` the rest.
_SUBJECT: Final = r"^(?:[^\s.*>]+|\*)(?:\.(?:[^\s.*>]+|\*))*(?:\.>)?$|^>$"
# What each pattern means, for messages a person can act on.
FORMS: Final = {
    STEP_ID: "a step id: letters, digits and '_', not starting with a digit",
    _NAME: "a workflow name: lowercase letters, digits, '.', '_' and '-'",
    _PROJECT_SECRET: "a project secret name: letters, digits, '.', '_' and '-'",
    _CONNECTOR_SECRET: "a connector secret name: lowercase letters, digits, '.', '_' and '-'",
    _POOL: "a pool name: lowercase letters, digits, '_' and '-'",
    _WEBHOOK_PATH: "a URL path such as /hooks/orders",
    _SUBJECT: "a NATS subject such as orders.created (wildcards * and a final >)",
}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

RetryKind = ErrorKind | StopReason
DEFAULT_RETRY_ON: Final[tuple[RetryKind, ...]] = ("rate-limited", "unavailable", "timeout")


def _duration(value: Any) -> Any:
    """`30`, `1.5`, `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"2d"` -> seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"{value!r} is not a duration: write seconds (30) or a number with a unit "
            "(500ms, 30s, 5m, 1h30m, 2d)"
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
            ],
            "description": "Seconds, or a number with a unit: 500ms, 30s, 5m, 1h30m, 2d",
        }
    ),
]


def _host_pattern(value: str) -> str:
    try:
        HostPattern.parse(value)
    except GrantError as exc:
        raise ValueError(str(exc)) from None
    return value


StepId = Annotated[str, Field(pattern=STEP_ID)]
HostGrant = Annotated[str, AfterValidator(_host_pattern)]
ProjectSecret = Annotated[str, Field(pattern=_PROJECT_SECRET)]
ConnectorSecret = Annotated[str, Field(pattern=_CONNECTOR_SECRET)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RetrySpec(_Model):
    """How often and how patiently a failed step is tried again."""

    max_attempts: Annotated[int, Field(ge=1, le=100, description="1 = no retry")] = 1
    initial_backoff_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 500
    max_backoff_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 60_000
    multiplier: Annotated[float, Field(ge=1, le=100)] = 2.0
    jitter: Annotated[
        float, Field(ge=0, le=1, description="Each delay varies by up to this fraction")
    ] = 0.2
    retry_on: list[RetryKind] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_ON),
        description="Failure kinds (connector error kinds or sandbox stop reasons) to retry",
    )
    honour_retry_after: bool = Field(
        default=True, description="Wait at least a failure's retry-after-ms, if it gives one"
    )

    @model_validator(mode="after")
    def _ordered(self) -> RetrySpec:
        if self.max_backoff_ms < self.initial_backoff_ms:
            raise ValueError(
                f"max_backoff_ms ({self.max_backoff_ms}) is below initial_backoff_ms "
                f"({self.initial_backoff_ms})"
            )
        return self


class StepLimits(_Model):
    """Lower a connector's own limits for this step (they can never be raised)."""

    memory_mib: Annotated[int | None, Field(gt=0, le=4096)] = None
    fuel: Annotated[int | None, Field(gt=0)] = None
    output_kib: Annotated[int | None, Field(gt=0)] = None


class ConnectorStep(_Model):
    """A step that runs a connector."""

    type: Literal["connector"] = "connector"
    uses: str = Field(description="publisher/name@semver-range, e.g. flowforge/csv@^0.1")
    description: str | None = None
    config: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="The connector's config"
    )
    input: Any = Field(
        default_factory=dict,
        description="The connector's input; strings may hold ${{ JMESPath }} expressions "
        "over inputs and steps.<id>.output",
    )
    needs: list[StepId] = Field(
        default_factory=list, description="Steps that must finish first (references add more)"
    )
    when: str | None = Field(default=None, description="Run only when this expression is true")
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout: Duration | None = Field(default=None, description="Per attempt")
    secrets: dict[ConnectorSecret, ProjectSecret] = Field(
        default_factory=dict, description="Connector secret name -> project secret name"
    )
    network: list[HostGrant] = Field(
        default_factory=list, description="Host patterns granted (within the manifest's)"
    )
    limits: StepLimits = Field(default_factory=StepLimits)
    pool: Annotated[str, Field(pattern=_POOL, description="The worker pool")] = "default"

    @field_validator("uses")
    @classmethod
    def _uses_form(cls, value: str) -> str:
        match = _USES.match(value.strip())
        if match is None:
            raise ValueError(
                f"{value!r} is not publisher/name@range, e.g. flowforge/http-request@^0.1"
            )
        try:
            Range.parse(match.group(2))
        except VersionError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()

    @property
    def connector(self) -> str:
        return self.uses.split("@", 1)[0]

    @property
    def version_range(self) -> str:
        return self.uses.split("@", 1)[1]


class ApprovalStep(_Model):
    """A step that waits for a person to approve or reject (`flowforge run approve`)."""

    type: Literal["approval"]
    description: str | None = None
    message: str | None = Field(
        default=None, description="Shown to approvers; may hold ${{ }} expressions"
    )
    needs: list[StepId] = Field(default_factory=list)
    when: str | None = None
    timeout: Duration | None = Field(default=None, description="How long to wait")
    on_timeout: Literal["approve", "reject"] = Field(
        default="reject", description="What happens when the timeout passes first"
    )


def _step_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "approval" if value.get("type") == "approval" else "connector"
    return "approval" if getattr(value, "type", None) == "approval" else "connector"


Step = Annotated[
    Annotated[ConnectorStep, Tag("connector")] | Annotated[ApprovalStep, Tag("approval")],
    Discriminator(_step_kind),
]


class ManualTrigger(_Model):
    """Started by hand: `flowforge run start` or the run API."""

    type: Literal["manual"]


class CronTrigger(_Model):
    """Started on a schedule (five-field cron, or @hourly, @daily ...)."""

    type: Literal["cron"]
    schedule: str
    timezone: str = "UTC"
    input: Any = Field(default_factory=dict, description="The run's input")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron expression such as '*/5 * * * *' or '@daily'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Paris") from None
        return value


class WebhookTrigger(_Model):
    """Started by an HTTP POST; the body is the run's input."""

    type: Literal["webhook"]
    path: Annotated[str, Field(pattern=_WEBHOOK_PATH, description="e.g. /hooks/orders")]
    secret: ProjectSecret | None = Field(
        default=None, description="Project secret for the HMAC-SHA256 signature check"
    )


class NatsTrigger(_Model):
    """Started by a message on a NATS subject; the message is the run's input."""

    type: Literal["nats"]
    subject: Annotated[str, Field(pattern=_SUBJECT, description="e.g. orders.created")]


Trigger = Annotated[
    ManualTrigger | CronTrigger | WebhookTrigger | NatsTrigger, Field(discriminator="type")
]


def _manual_only() -> list[Trigger]:
    return [ManualTrigger(type="manual")]


class WorkflowSpec(_Model):
    """A workflow: its inputs, its steps (a DAG) and what starts it."""

    name: Annotated[str, Field(pattern=_NAME)]
    description: str | None = None
    inputs: JsonSchema = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema of the run's input (read as ${{ inputs.<field> }})",
    )
    steps: Annotated[dict[StepId, Step], Field(min_length=1)]
    triggers: list[Trigger] = Field(
        default_factory=_manual_only,
        description="What starts a run (default: manual only)",
    )
    timeout: Duration | None = Field(default=None, description="The whole run's deadline")
    concurrency: Annotated[
        int | None, Field(ge=1, description="Most runs of this workflow active at once")
    ] = None

    # Where each node came from, when the spec was read from a file.
    _source: SourceMap = PrivateAttr(default_factory=SourceMap)

    @field_validator("inputs")
    @classmethod
    def _is_a_schema(cls, value: JsonSchema) -> JsonSchema:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @property
    def source(self) -> SourceMap:
        return self._source

    def with_source(self, source: SourceMap) -> WorkflowSpec:
        """This spec, remembering where its nodes are in a file."""
        self._source = source
        return self


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema of a workflow file, for docs and editors."""
    return WorkflowSpec.model_json_schema(by_alias=True, mode="validation")


def workflow_schema_text() -> str:
    """`docs/workflow.schema.json` as committed (stable, diff-friendly)."""
    return schema_document(workflow_json_schema())


__all__ = [
    "DEFAULT_RETRY_ON",
    "FORMS",
    "REGENERATE",
    "SCHEMA_DOC",
    "STEP_ID",
    "ApprovalStep",
    "ConnectorStep",
    "CronTrigger",
    "ManualTrigger",
    "NatsTrigger",
    "RetryKind",
    "RetrySpec",
    "Step",
    "StepLimits",
    "Trigger",
    "WebhookTrigger",
    "WorkflowSpec",
    "workflow_json_schema",
    "workflow_schema_text",
]
