"""The connector manifest (`connector.toml`): what a connector is, what it may reach,
and the examples that show it works.

One pydantic model, read from TOML here and (later) from the canonical JSON inside a
signed package. Its JSON Schema is published as `docs/connector-manifest.schema.json`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .limits import MIB, Limits
from .network import GrantError, HostPattern
from .values import ErrorKind

MANIFEST_FILE: Final = "connector.toml"
WORLD: Final = "flowforge:connector@0.1.0"

_NAME = r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9-]{0,62}$"
# Semantic Versioning 2.0.0, as the spec's own regular expression has it.
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

Language = Literal["python", "javascript", "zig", "c"]
JsonSchema = dict[str, Any]


class ManifestError(Exception):
    """A manifest that cannot be used; the message lists every problem with its field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capabilities(_Model):
    """What the connector declares it needs; a workflow may grant at most this."""

    network: list[str] = Field(
        default_factory=list,
        description="Host patterns: example.com, *.example.com, example.com:8443, 10.0.0.5:80",
    )
    secrets: list[str] = Field(default_factory=list, description="Names of secrets it reads")

    @field_validator("network")
    @classmethod
    def _patterns_parse(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                HostPattern.parse(pattern)
            except GrantError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _SECRET_NAME.match(name):
                raise ValueError(
                    f"secret name {name!r}: use lowercase letters, digits, '-', '_' or '.'"
                )
        return value


class ManifestLimits(_Model):
    """Default limits for one invocation; a workflow may lower them."""

    memory_mib: Annotated[int, Field(gt=0, le=4096)] = 64
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    fuel: Annotated[int, Field(gt=0)] = Limits().fuel
    output_kib: Annotated[int, Field(gt=0)] = 1024

    def to_limits(self) -> Limits:
        return Limits(
            memory_bytes=self.memory_mib * MIB,
            timeout_s=self.timeout_s,
            fuel=self.fuel,
            output_bytes=self.output_kib * 1024,
        )


class Schemas(_Model):
    """JSON Schemas of the connector's ports."""

    config: JsonSchema = Field(default_factory=lambda: {"type": "object"})
    input: JsonSchema = Field(default_factory=dict)
    output: JsonSchema = Field(default_factory=dict)

    @field_validator("config", "input", "output")
    @classmethod
    def _is_a_schema(cls, value: JsonSchema) -> JsonSchema:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value


class RecordedRequest(_Model):
    """What the connector is expected to send; matched on method and URL."""

    method: str = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict, description="Must be present")
    body: str | None = None
    json_body: Any = Field(default=None, alias="json")


class RecordedResponse(_Model):
    """What the mock server answers."""

    status: Annotated[int, Field(ge=100, le=599)] = 200
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(default=None, alias="json")

    @model_validator(mode="after")
    def _one_body(self) -> RecordedResponse:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give the response as body or as json, not both")
        return self


class HttpExchange(_Model):
    """One recorded HTTP request and its response, served by the test mock server."""

    request: RecordedRequest
    response: RecordedResponse = Field(default_factory=RecordedResponse)


class Expectation(_Model):
    """An example's expected result: an output, or a failure kind."""

    output: Any = None
    failure: ErrorKind | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        if (self.output is None) == (self.failure is None):
            raise ValueError("set exactly one of expect.output and expect.failure")
        return self


class Example(_Model):
    """Config + input -> expected result, with the secrets and HTTP exchanges it needs."""

    name: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    input: Any = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    http: list[HttpExchange] = Field(default_factory=list)
    expect: Expectation


class ConnectorManifest(_Model):
    """A connector's manifest, as `connector.toml` holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(description="publisher/name, e.g. acme/http-request")]
    version: Annotated[str, Field(description="Semantic version, e.g. 1.2.0")]
    description: Annotated[str, Field(min_length=1, max_length=500)]
    language: Language
    license: Annotated[str, Field(min_length=1, description="SPDX licence expression")]
    world: Literal["flowforge:connector@0.1.0"] = WORLD
    schemas: Schemas = Field(default_factory=Schemas)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    limits: ManifestLimits = Field(default_factory=ManifestLimits)
    examples: list[Example] = Field(default_factory=list)
    component_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        if not re.match(_NAME, value):
            raise ValueError(
                f"{value!r} is not publisher/name in lowercase letters, digits and '-', "
                "e.g. acme/http-request"
            )
        return value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not re.match(_SEMVER, value):
            raise ValueError(f"{value!r} is not a semantic version such as 1.2.0 or 2.0.0-rc.1")
        return value

    @model_validator(mode="after")
    def _examples_use_declared_secrets(self) -> ConnectorManifest:
        declared = set(self.capabilities.secrets)
        for example in self.examples:
            extra = sorted(set(example.secrets) - declared)
            if extra:
                raise ValueError(
                    f"example {example.name!r} uses secrets {extra} that "
                    "capabilities.secrets does not declare"
                )
        return self

    @property
    def publisher(self) -> str:
        return self.name.split("/", 1)[0]


def _format_errors(source: str, error: ValidationError) -> str:
    lines = [f"{source}: {error.error_count()} problem(s):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_manifest(data: dict[str, Any], source: str = MANIFEST_FILE) -> ConnectorManifest:
    """Validate a manifest from its parsed form; ManifestError lists every problem."""
    try:
        return ConnectorManifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(_format_errors(source, exc)) from None


def load_manifest(directory_or_file: Path) -> ConnectorManifest:
    """Read `connector.toml` (a folder holding one, or the file itself)."""
    path = directory_or_file
    if path.is_dir():
        path = path / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{path}: no such file; a connector folder holds a {MANIFEST_FILE} "
            "(flowforge connector new NAME creates one)"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    return parse_manifest(data, str(path))


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of the manifest, for docs and editors."""
    return ConnectorManifest.model_json_schema(by_alias=True)
