"""The publishing checks that need no database: reading the package, its signature,
loading the component against the world, running its examples, and the semver diff.

Each refusal is a `PublishRefused` naming its check. The sandbox work is blocking; the
service runs it on a thread.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowforge.runtime.cache import CompileCache
from flowforge.runtime.conformance import ExampleResult, run_examples
from flowforge.runtime.loader import LoadError
from flowforge.runtime.manifest import ConnectorManifest
from flowforge.runtime.package import PackageContents, PackageError, read_package
from flowforge.runtime.sandbox import Sandbox
from flowforge.runtime.signing import verify

from .errors import PublishRefused
from .schemadiff import Port, schema_breaks
from .scoring import SCORED_FAULTS, Measurements
from .semver import Version


def read(data: bytes) -> PackageContents:
    """Check (1a): the archive, its manifest and the component digest."""
    try:
        return read_package(data)
    except PackageError as exc:
        raise PublishRefused("package", exc.reason) from None


def check_signature(contents: PackageContents, public_key: bytes) -> str:
    """Check (1b): the signature verifies under the signer's key; returns the fingerprint."""
    signature = contents.signature
    if signature is None:
        raise PublishRefused(
            "signature",
            f"{contents.label} is not signed; sign it with "
            "`flowforge connector sign PKG --key NAME` before publishing",
        )
    if not verify(public_key, signature.signature, contents.manifest_bytes):
        raise PublishRefused(
            "signature",
            f"the signature of {contents.label} by key {signature.key} does not verify over "
            "manifest.json: the manifest was changed after signing, or another key signed it",
        )
    return signature.key


@dataclass(frozen=True, slots=True)
class Conformance:
    """What the world check and the example run measured."""

    examples: list[ExampleResult]
    compile_ms: float
    first_call_ms: float


def run_in_sandbox(contents: PackageContents) -> Conformance:
    """Checks (3) and (4): load the component (cold: a fresh compile cache, so the compile
    time is measured, not a cache hit), call it once, then run every manifest example."""
    manifest = contents.manifest
    with tempfile.TemporaryDirectory(prefix="flowforge-publish-") as scratch:
        sandbox = Sandbox(CompileCache(Path(scratch)))
        try:
            started = time.perf_counter()
            try:
                loaded = sandbox.load(contents.component, contents.label)
            except LoadError as exc:
                raise PublishRefused("world", str(exc)) from None
            compile_ms = (time.perf_counter() - started) * 1000
            # The first instantiate + invoke, with nothing granted; its outcome is irrelevant.
            first = sandbox.run(loaded, limits=manifest.limits.to_limits())
            results = run_examples(sandbox, loaded, manifest, faults=SCORED_FAULTS)
        finally:
            sandbox.close()
    failed = [r for r in results if not r.passed]
    if failed:
        shown = "; ".join(f"{r.name!r}: {r.reason}" for r in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        raise PublishRefused(
            "examples",
            f"{len(failed)}/{len(results)} manifest examples fail in the sandbox: {shown}{more}; "
            "run `flowforge connector test` on the connector folder",
        )
    return Conformance(results, compile_ms, first.stats.wall_ms)


def measurements(contents: PackageContents, run: Conformance, package_bytes: int) -> Measurements:
    return Measurements(
        run.examples, run.compile_ms, run.first_call_ms, len(contents.component), package_bytes
    )


def _ports(manifest: ConnectorManifest) -> dict[Port, dict[str, Any]]:
    s = manifest.schemas
    return {"input": s.input, "output": s.output, "config": s.config}


def check_semver(manifest: ConnectorManifest, previous: ConnectorManifest | None) -> None:
    """Check (5): breaking schema changes since `previous` need a major version."""
    if previous is None:
        return
    new, old = Version.parse(manifest.version), Version.parse(previous.version)
    if new.is_breaking_bump_from(old):
        return
    changes = schema_breaks(_ports(previous), _ports(manifest))
    if changes:
        need = f"{old.major + 1}.0.0" if old.major else f"0.{old.minor + 1}.0"
        listed = "; ".join(str(c) for c in changes[:5])
        raise PublishRefused(
            "semver",
            f"{manifest.name} {manifest.version} breaks callers of {previous.version} "
            f"({listed}) but is not a new major version; publish it as {need} or later, "
            "or keep the old fields",
        )


__all__ = [
    "Conformance",
    "check_semver",
    "check_signature",
    "measurements",
    "read",
    "run_in_sandbox",
]
