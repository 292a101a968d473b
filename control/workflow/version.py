"""Immutable versions: the canonical form of a validated workflow and its hash.

The canonical form is the normalised spec (defaults filled in, durations in seconds,
`needs` explicit + inferred, order-free lists sorted, `when` without `${{ }}`) plus each
connector step's pin (name, version, package digest), as canonical JSON. The same content
is the same version whatever the key order, spelling of durations or whitespace; a new
package digest behind the same range is a new version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from flowforge.runtime.canonical import canonical_json
from flowforge.runtime.limits import Limits

from .expressions import condition, tidy
from .plan import (
    ApprovalPolicy,
    Grants,
    PinnedConnector,
    PlannedStep,
    RetryPolicy,
    WorkflowVersion,
)
from .resolver import ResolvedConnector
from .spec import ConnectorStep, RetrySpec, WorkflowSpec

FORMAT: Final = 1
_SHOWN: Final = 80


def _sorted_unique(values: list[Any]) -> list[Any]:
    return sorted(set(values))


def normalised(
    spec: WorkflowSpec, needs: Mapping[str, tuple[str, ...]], pins: Mapping[str, PinnedConnector]
) -> dict[str, Any]:
    """The document whose canonical bytes are hashed."""
    doc = spec.model_dump(mode="json", by_alias=True)
    for step_id, step in doc["steps"].items():
        step["needs"] = sorted(needs.get(step_id, ()))
        if step.get("when") is not None:
            step["when"] = condition(step["when"])
        if step.get("message") is not None:
            step["message"] = tidy(step["message"])
        if step["type"] == "connector":
            step["input"] = tidy(step["input"])
            step["network"] = _sorted_unique(step["network"])
            step["retry"]["retry_on"] = _sorted_unique(step["retry"]["retry_on"])
    doc["triggers"] = sorted(doc["triggers"], key=canonical_json)
    return {
        "format": FORMAT,
        "spec": doc,
        "pins": {
            step_id: {"name": pin.name, "version": pin.version, "digest": pin.digest}
            for step_id, pin in sorted(pins.items())
        },
    }


def _retry(spec: RetrySpec) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=spec.max_attempts,
        initial_backoff_ms=spec.initial_backoff_ms,
        max_backoff_ms=spec.max_backoff_ms,
        multiplier=spec.multiplier,
        jitter=spec.jitter,
        retry_on=frozenset(spec.retry_on),
        honour_retry_after=spec.honour_retry_after,
    )


def _topological(needs: Mapping[str, tuple[str, ...]], order: list[str]) -> list[str]:
    """Steps with every need before them; ties keep the order they were written in."""
    placed: list[str] = []
    done: set[str] = set()
    remaining = list(order)
    while remaining:
        ready = [s for s in remaining if all(n in done for n in needs.get(s, ()))]
        if not ready:
            raise ValueError(f"the steps {remaining} form a cycle")  # validate() prevents it
        placed.extend(ready)
        done.update(ready)
        remaining = [s for s in remaining if s not in done]
    return placed


def _planned(
    step_id: str,
    spec: WorkflowSpec,
    needs: tuple[str, ...],
    pin: PinnedConnector | None,
    limits: Limits | None,
) -> PlannedStep:
    step = spec.steps[step_id]
    when = condition(step.when) if step.when is not None else None
    if isinstance(step, ConnectorStep):
        return PlannedStep(
            id=step_id,
            kind="connector",
            connector=pin,
            config=MappingProxyType(dict(step.config)),
            input_mapping=step.input,
            needs=needs,
            when=when,
            retry=_retry(step.retry),
            timeout_s=limits.timeout_s if limits is not None else step.timeout,
            grants=Grants(
                tuple(_sorted_unique(step.network)), MappingProxyType(dict(step.secrets))
            ),
            limits=limits,
            pool=step.pool,
        )
    return PlannedStep(
        id=step_id,
        kind="approval",
        connector=None,
        config=MappingProxyType({}),
        input_mapping=None,
        needs=needs,
        when=when,
        retry=RetryPolicy(),
        timeout_s=step.timeout,
        grants=Grants(),
        limits=None,
        approval=ApprovalPolicy(step.message, step.on_timeout),
    )


def build_version(
    spec: WorkflowSpec,
    resolved: Mapping[str, ResolvedConnector],
    needs: Mapping[str, tuple[str, ...]],
    limits: Mapping[str, Limits],
) -> WorkflowVersion:
    """Pin and hash a validated spec (call `validate`, which checks it first)."""
    pins = {
        step_id: PinnedConnector(c.name, c.version, c.digest) for step_id, c in resolved.items()
    }
    canonical = canonical_json(normalised(spec, needs, pins))
    order = _topological(needs, list(spec.steps))
    steps = {
        step_id: _planned(
            step_id, spec, needs.get(step_id, ()), pins.get(step_id), limits.get(step_id)
        )
        for step_id in order
    }
    return WorkflowVersion(
        name=spec.name,
        version=hashlib.sha256(canonical).hexdigest(),
        spec=spec,
        canonical=canonical,
        steps=MappingProxyType(steps),
        inputs_schema=MappingProxyType(dict(spec.inputs)),
        timeout_s=spec.timeout,
        concurrency=spec.concurrency,
    )


# --- diff -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _diff(old: Any, new: Any, path: str, lines: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            here = _join(path, key)
            if key not in new:
                lines.append(f"- {here}: {_show(old[key])}")
            elif key not in old:
                lines.append(f"+ {here}: {_show(new[key])}")
            else:
                _diff(old[key], new[key], here, lines)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(a, b, _join(path, index), lines)
        return
    lines.append(f"~ {path}: {_show(old)} -> {_show(new)}")


def diff(a: WorkflowVersion, b: WorkflowVersion) -> list[str]:
    """What changed from version `a` to `b`, one line per changed value ("+" added,
    "-" removed, "~" changed), paths as in the workflow file (`steps.fetch.with.url`),
    connector pins under `pins.<step>`; empty when they are the same version."""
    return diff_canonical(a.canonical, b.canonical)


def diff_canonical(a: bytes | str, b: bytes | str) -> list[str]:
    """`diff` over two canonical forms (as `WorkflowService.Get` returns them)."""
    old = json.loads(a)
    new = json.loads(b)
    lines: list[str] = []
    _diff(old["spec"], new["spec"], "", lines)
    _diff(old["pins"], new["pins"], "pins", lines)
    return lines


__all__ = ["FORMAT", "build_version", "diff", "diff_canonical", "normalised"]
