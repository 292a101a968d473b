"""Compatibility scoring: a hard gate and a 0..100 score whose breakdown is always shown.

Every factor is computed from facts measured or read at publish time (the conformance
run, the compile and first call, the package's sizes, the manifest, the registry's record
of the signing key); `docs/marketplace.md` gives each weight and why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from flowforge.runtime.conformance import RETRYABLE, ExampleResult, Fault
from flowforge.runtime.manifest import WORLD, ConnectorManifest
from flowforge.runtime.network import HostPattern

from .semver import Version

# Faults injected into examples that record HTTP exchanges. "timeout" is left out: it
# waits out the step's wall-clock limit per example, too slow for every publish.
SCORED_FAULTS: Final[tuple[Fault, ...]] = ("http-500", "http-503", "http-429", "reset")
_MUST_RETRY: Final = frozenset({"http-503", "http-429", "reset"})

WEIGHTS: Final = {
    "conformance": 30,
    "least_privilege": 15,
    "semver": 10,
    "signing_key": 10,
    "docs": 10,
    "license": 10,
    "footprint": 15,
}

# OSI-approved licences, by SPDX identifier (the commonly used subset).
OSI_LICENSES: Final = frozenset(
    {
        "0BSD", "AFL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-2.0",
        "Artistic-2.0", "BlueOak-1.0.0", "BSD-2-Clause", "BSD-3-Clause", "BSL-1.0",
        "CDDL-1.0", "ECL-2.0", "EPL-1.0", "EPL-2.0", "EUPL-1.2", "GPL-2.0-only",
        "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "ISC", "LGPL-2.1-only",
        "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT", "MIT-0",
        "MPL-2.0", "MS-PL", "MS-RL", "NCSA", "OFL-1.1", "PostgreSQL", "UPL-1.0",
        "Unlicense", "Zlib",
    }
)  # fmt: skip

_KIB: Final = 1024
_SIZE_FULL: Final = 256 * _KIB
_SIZE_ZERO: Final = 32 * 1024 * _KIB
_COLD_FULL_MS: Final = 50.0
_COLD_ZERO_MS: Final = 30_000.0
_KEY_MATURE_DAYS: Final = 180.0
_FREE_SECRETS: Final = 2


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor: points out of its weight, why, and the facts it was computed from."""

    name: str
    points: float
    weight: int
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "points": round(self.points, 1),
            "weight": self.weight,
            "reason": self.reason,
            "measured": self.measured,
        }


@dataclass(frozen=True, slots=True)
class Gate:
    """Whether this runtime can run the package at all; a failed gate means not installable."""

    installable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    factors: tuple[Factor, ...]

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "factors": [f.to_json() for f in self.factors]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Score:
        factors = tuple(
            Factor(f["name"], float(f["points"]), int(f["weight"]), f["reason"], f["measured"])
            for f in doc["factors"]
        )
        return cls(int(doc["total"]), factors)


@dataclass(frozen=True, slots=True)
class Measurements:
    """What publishing measured: the conformance run, the cold start and the sizes."""

    examples: Sequence[ExampleResult]
    compile_ms: float
    first_call_ms: float
    component_bytes: int
    package_bytes: int

    @property
    def cold_start_ms(self) -> float:
        return self.compile_ms + self.first_call_ms


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """The registry's record of the signing key at publish time."""

    fingerprint: str
    age_days: float
    role: str  # "owner" or "approved"


def gate(world: str) -> Gate:
    if world == WORLD:
        return Gate(True, f"targets {WORLD}, the world this runtime links")
    return Gate(False, f"targets {world}; this runtime links only {WORLD}")


def _scale_down(value: float, full: float, zero: float) -> float:
    """1.0 at or below `full`, 0.0 at or above `zero`, log-linear between."""
    if value <= full:
        return 1.0
    if value >= zero:
        return 0.0
    return 1.0 - math.log(value / full) / math.log(zero / full)


def conformance(m: Measurements) -> Factor:
    weight = WEIGHTS["conformance"]
    total = len(m.examples)
    if total == 0:
        return Factor("conformance", 0, weight, "no examples: nothing was measured", {})
    passed = sum(1 for r in m.examples if r.passed)
    faults = [f for r in m.examples for f in r.faults]
    handled = sum(
        1
        for f in faults
        if f.outcome == "failure" and (f.fault not in _MUST_RETRY or f.kind in RETRYABLE)
    )
    measured: dict[str, Any] = {"examples": total, "passed": passed}
    if not faults:
        points = weight * passed / total
        reason = f"{passed}/{total} examples pass; no HTTP examples to inject faults into"
    else:
        measured.update(fault_runs=len(faults), faults_handled=handled)
        points = weight * (2 / 3) * passed / total + weight * (1 / 3) * handled / len(faults)
        reason = (
            f"{passed}/{total} examples pass; {handled}/{len(faults)} injected HTTP faults "
            "reported as a typed failure (retryable where it should be)"
        )
    return Factor("conformance", points, weight, reason, measured)


def least_privilege(manifest: ConnectorManifest) -> Factor:
    weight = WEIGHTS["least_privilege"]
    network, secrets = manifest.capabilities.network, manifest.capabilities.secrets
    wildcards = [p for p in network if HostPattern.parse(p).wildcard]
    net_points = max(0.0, 10 - 4 * len(wildcards))
    extra = max(0, len(secrets) - _FREE_SECRETS)
    secret_points = max(0.0, 5 - 2 * extra)
    parts = [
        "no network" if not network else f"{len(network)} host pattern(s)",
        f"{len(wildcards)} wildcard(s)" if wildcards else "no wildcards",
        f"{len(secrets)} secret(s)",
    ]
    return Factor(
        "least_privilege",
        net_points + secret_points,
        weight,
        ", ".join(parts),
        {"hosts": len(network), "wildcard_hosts": len(wildcards), "secrets": len(secrets)},
    )


def _port_typed(schema: dict[str, Any]) -> bool:
    if "type" not in schema and "enum" not in schema and "const" not in schema:
        return False
    return schema.get("type") != "object" or isinstance(schema.get("properties"), dict)


def semver_hygiene(manifest: ConnectorManifest, previous: str | None) -> Factor:
    weight = WEIGHTS["semver"]
    schemas = manifest.schemas
    ports = {"input": schemas.input, "output": schemas.output, "config": schemas.config}
    typed = [name for name, schema in ports.items() if _port_typed(schema)]
    version = Version.parse(manifest.version)
    stable = version.major >= 1 and not version.prerelease
    points = 2 * len(typed) + (4 if stable else 1)
    untyped = sorted(set(ports) - set(typed))
    reason = (
        f"{len(typed)}/3 port schemas typed"
        + (f" ({', '.join(untyped)} not: breaking changes there cannot be seen)" if untyped else "")
        + ("; 1.0 or later: a stability promise" if stable else "; 0.x: no stability promise")
        + (f"; checked against {previous}" if previous else "; first version")
    )
    return Factor(
        "semver",
        points,
        weight,
        reason,
        {"typed_ports": len(typed), "stable": stable, "previous": previous},
    )


def signing_key(facts: KeyFacts) -> Factor:
    weight = WEIGHTS["signing_key"]
    role_points = 4 if facts.role == "owner" else 3
    age_points = 6 * min(1.0, facts.age_days / _KEY_MATURE_DAYS)
    reason = (
        f"signed by the namespace's {'owner' if facts.role == 'owner' else 'approved'} key, "
        f"first seen by this registry {facts.age_days:.0f} day(s) before"
    )
    return Factor(
        "signing_key",
        role_points + age_points,
        weight,
        reason,
        {"key": facts.fingerprint, "age_days": round(facts.age_days, 2), "role": facts.role},
    )


def _described(schema: Any) -> tuple[int, int]:
    """(properties with a description, properties), through nested objects."""
    if not isinstance(schema, dict):
        return 0, 0
    have = total = 0
    props = schema.get("properties")
    if isinstance(props, dict):
        for sub in props.values():
            total += 1
            have += 1 if isinstance(sub, dict) and sub.get("description") else 0
            h, t = _described(sub)
            have, total = have + h, total + t
    if isinstance(schema.get("items"), dict):
        h, t = _described(schema["items"])
        have, total = have + h, total + t
    return have, total


def docs(manifest: ConnectorManifest) -> Factor:
    weight = WEIGHTS["docs"]
    s = manifest.schemas
    counts = [_described(x) for x in (s.input, s.output, s.config)]
    have, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
    described = have / total if total else 0.0
    examples = len(manifest.examples)
    failures = sum(1 for e in manifest.examples if e.expect.failure is not None)
    long_enough = len(manifest.description) >= 40
    points = (
        (2 if long_enough else 0)
        + 3 * described
        + 3 * min(examples, 3) / 3
        + (2 if failures else 0)
    )
    reason = (
        f"description {len(manifest.description)} chars; {have}/{total} schema properties "
        f"described; {examples} example(s), {failures} showing a failure"
    )
    return Factor(
        "docs",
        points,
        weight,
        reason,
        {
            "description_chars": len(manifest.description),
            "properties_described": have,
            "properties": total,
            "examples": examples,
            "failure_examples": failures,
        },
    )


def osi_approved(expression: str) -> bool:
    """Whether an SPDX expression can be used under OSI-approved licences only: some
    OR-alternative whose every licence (WITH exceptions aside) is OSI-approved."""
    text = expression.replace("(", " ").replace(")", " ")
    for alternative in re.split(r"\s+OR\s+", text):
        ids = re.split(r"\s+AND\s+", alternative.strip())
        licences = [i.split(" WITH ")[0].strip().removesuffix("+") for i in ids]
        if licences and all(lic in OSI_LICENSES for lic in licences):
            return True
    return False


def license_factor(manifest: ConnectorManifest) -> Factor:
    weight = WEIGHTS["license"]
    ok = osi_approved(manifest.license)
    reason = (
        f"{manifest.license} is OSI-approved"
        if ok
        else f"{manifest.license} is not in the OSI-approved SPDX list this registry knows"
    )
    return Factor("license", weight if ok else 0, weight, reason, {"license": manifest.license})


def footprint(m: Measurements) -> Factor:
    weight = WEIGHTS["footprint"]
    size = 5 * _scale_down(m.component_bytes, _SIZE_FULL, _SIZE_ZERO)
    cold = 10 * _scale_down(max(m.cold_start_ms, 0.001), _COLD_FULL_MS, _COLD_ZERO_MS)
    reason = (
        f"component {m.component_bytes / _KIB:.0f} KiB; cold start "
        f"{m.cold_start_ms:.0f} ms (compile {m.compile_ms:.0f} ms + first call "
        f"{m.first_call_ms:.1f} ms)"
    )
    return Factor(
        "footprint",
        size + cold,
        weight,
        reason,
        {
            "component_bytes": m.component_bytes,
            "package_bytes": m.package_bytes,
            "compile_ms": round(m.compile_ms, 1),
            "first_call_ms": round(m.first_call_ms, 2),
            "cold_start_ms": round(m.cold_start_ms, 1),
        },
    )


def score(
    manifest: ConnectorManifest,
    measurements: Measurements,
    key: KeyFacts,
    previous_version: str | None,
) -> Score:
    factors = (
        conformance(measurements),
        least_privilege(manifest),
        semver_hygiene(manifest, previous_version),
        signing_key(key),
        docs(manifest),
        license_factor(manifest),
        footprint(measurements),
    )
    total = round(sum(f.points for f in factors))
    return Score(max(0, min(100, total)), factors)


__all__ = [
    "OSI_LICENSES",
    "SCORED_FAULTS",
    "WEIGHTS",
    "Factor",
    "Gate",
    "KeyFacts",
    "Measurements",
    "Score",
    "gate",
    "osi_approved",
    "score",
]
