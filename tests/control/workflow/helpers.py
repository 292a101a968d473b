"""Connectors for validation tests: the real core manifests, and small made-up ones."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from flowforge.control.workflow import (
    ResolvedConnector,
    StaticResolver,
    WorkflowVersion,
    load_spec_text,
    validate,
)
from flowforge.runtime.manifest import ConnectorManifest, load_manifest, parse_manifest

ROOT = Path(__file__).parents[3]
CONNECTORS = ROOT / "connectors"
EXAMPLES = ROOT / "examples" / "workflows"


def digest_of(name: str, version: str) -> str:
    return hashlib.sha256(f"{name}@{version}".encode()).hexdigest()


def resolved(manifest: ConnectorManifest, digest: str | None = None) -> ResolvedConnector:
    return ResolvedConnector(
        manifest.name,
        manifest.version,
        digest or digest_of(manifest.name, manifest.version),
        manifest,
    )


def core_manifests() -> list[ConnectorManifest]:
    return [
        load_manifest(folder)
        for folder in sorted(CONNECTORS.iterdir())
        if (folder / "connector.toml").is_file()
    ]


def manifest(name: str, version: str = "1.0.0", **fields: Any) -> ConnectorManifest:
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": "a test connector",
        "language": "python",
        "license": "Apache-2.0",
    }
    data.update(fields)
    return parse_manifest(data)


# Made-up connectors whose port schemas the tests lean on.
SOURCE = manifest(
    "acme/source",
    schemas={
        "output": {
            "type": "object",
            "required": ["rows", "count"],
            "properties": {
                "rows": {"type": "array", "items": {"type": "object"}},
                "count": {"type": "integer"},
                "label": {"type": "string"},
                "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
    capabilities={"network": ["*.example.com", "db.internal:5432"], "secrets": ["token"]},
    limits={"memory_mib": 64, "timeout_s": 30},
)
SINK = manifest(
    "acme/sink",
    schemas={
        "config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"mode": {"enum": ["fast", "safe"]}},
        },
        "input": {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array"},
                "title": {"type": "string"},
                "size": {"type": "number"},
            },
        },
        "output": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    },
)


def resolver(*extra: ConnectorManifest) -> StaticResolver:
    return StaticResolver(resolved(m) for m in [*core_manifests(), SOURCE, SINK, *extra])


def check(text: str, *extra: ConnectorManifest) -> WorkflowVersion:
    return validate(load_spec_text(text, "wf.yaml"), resolver(*extra))
