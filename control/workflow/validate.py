"""Validation at submit: every problem with a workflow, each with its step, field and
line:column, or a pinned `WorkflowVersion`.

Checks: unknown steps in `needs` and in expressions, invalid JMESPath, unknown `inputs.`
fields, cycles (named: a -> b -> c -> a), connectors that do not resolve, config against
the connector's config schema, port schemas (a mapped upstream output field the upstream
does not have, or whose type cannot fit the downstream input; a missing required input),
grants beyond the manifest, limits above the manifest's.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from jmespath.parser import ParsedResult

from flowforge.runtime.limits import MIB, Limits

from .errors import NodePath, Problem, WorkflowInvalid
from .expressions import (
    OPEN,
    ExpressionError,
    compile_condition,
    references,
    strings,
    template,
    whole_path,
)
from .grants import uncovered
from .plan import APPROVAL_OUTPUT_SCHEMA, WorkflowVersion
from .resolver import ResolvedConnector, ResolveError, Resolver
from .schemas import Schema, field_schema, fits, json_type, schema_at, shown, types
from .spec import ApprovalStep, ConnectorStep, WorkflowSpec
from .version import build_version


def _hint(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _path_text(path: NodePath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Checker:
    def __init__(self, spec: WorkflowSpec, resolver: Resolver) -> None:
        self.spec = spec
        self.resolver = resolver
        self.source = spec.source
        self.problems: list[Problem] = []
        self.resolved: dict[str, ResolvedConnector] = {}
        # step -> {needed step: where the need is written}
        self.needs: dict[str, dict[str, NodePath]] = {step: {} for step in spec.steps}
        # (steps.<id>.output... reference, where it is written)
        self.output_refs: list[tuple[NodePath, NodePath]] = []

    def report(self, path: NodePath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, key=key))

    # --- per step ---------------------------------------------------------------------

    def check(self) -> None:
        for step_id, step in self.spec.steps.items():
            here: NodePath = ("steps", step_id)
            for index, need in enumerate(step.needs):
                where = (*here, "needs", index)
                if need not in self.spec.steps:
                    hint = _hint(need, self.spec.steps)
                    self.report(where, f"needs unknown step {need!r}{hint}")
                else:
                    self.needs[step_id].setdefault(need, where)
            if isinstance(step, ConnectorStep):
                self._connector(step_id, step)
            else:
                self._approval(step_id, step)
            if step.when is not None:
                self._condition(step_id, step.when)
        self._cycles()
        self._outputs()
        for step_id, step in self.spec.steps.items():
            if isinstance(step, ConnectorStep) and step_id in self.resolved:
                self._ports(step_id, step, self.resolved[step_id])
        self._triggers()

    def _connector(self, step_id: str, step: ConnectorStep) -> None:
        here: NodePath = ("steps", step_id)
        self._expressions(step_id, step.input, (*here, "input"))
        try:
            resolved = self.resolver.resolve(step.connector, step.version_range)
        except ResolveError as exc:
            self.report((*here, "uses"), f"cannot resolve {step.uses}: {exc}")
            return
        self.resolved[step_id] = resolved
        manifest = resolved.manifest
        for path, _text in strings(step.config, (*here, "with")):
            self.report(
                path, "with is fixed for every run; put ${{ }} expressions in input instead"
            )
        validator = jsonschema.Draft202012Validator(manifest.schemas.config)
        for error in sorted(validator.iter_errors(step.config), key=lambda e: list(e.path)):
            path = (*here, "with", *error.absolute_path)
            self.report(path, f"{manifest.name} config: {error.message}")
        declared_hosts = manifest.capabilities.network
        for index, pattern in uncovered(step.network, declared_hosts):
            declared = ", ".join(declared_hosts) if declared_hosts else "no network access"
            self.report(
                (*here, "network", index),
                f"grants {pattern!r}, beyond what {manifest.name} declares ({declared})",
            )
        declared_secrets = manifest.capabilities.secrets
        for name in step.secrets:
            if name not in declared_secrets:
                declared = ", ".join(declared_secrets) if declared_secrets else "no secrets"
                self.report(
                    (*here, "secrets", name),
                    f"grants secret {name!r}, which {manifest.name} does not declare "
                    f"(it declares {declared})",
                    key=True,
                )
        self._limits(step_id, step, resolved)

    def _limits(self, step_id: str, step: ConnectorStep, resolved: ResolvedConnector) -> None:
        here: NodePath = ("steps", step_id)
        own = resolved.manifest.limits
        pairs = (
            ("memory_mib", step.limits.memory_mib, own.memory_mib),
            ("fuel", step.limits.fuel, own.fuel),
            ("output_kib", step.limits.output_kib, own.output_kib),
        )
        for name, wanted, allowed in pairs:
            if wanted is not None and wanted > allowed:
                self.report(
                    (*here, "limits", name),
                    f"{wanted} is above {resolved.name}'s limit {allowed}; a step may only "
                    "lower a connector's limits",
                )
        if step.timeout is not None and step.timeout > own.timeout_s:
            self.report(
                (*here, "timeout"),
                f"{step.timeout:g}s is above {resolved.name}'s limit of {own.timeout_s:g}s; "
                "a step may only lower a connector's limits",
            )

    def _approval(self, step_id: str, step: ApprovalStep) -> None:
        if step.message is not None:
            self._expressions(step_id, step.message, ("steps", step_id, "message"))

    def _condition(self, step_id: str, text: str) -> None:
        where: NodePath = ("steps", step_id, "when")
        try:
            parsed = compile_condition(text)
        except ExpressionError as exc:
            self.report(where, str(exc))
            return
        for ref in references(parsed):
            self._reference(step_id, ref, where)

    # --- expressions and references -----------------------------------------------------

    def _expressions(self, step_id: str, value: Any, base: NodePath) -> None:
        for path, text in strings(value, base):
            try:
                parsed = template(text)
            except ExpressionError as exc:
                self.report(path, str(exc))
                continue
            for part in parsed.parts:
                if isinstance(part, ParsedResult):
                    for ref in references(part):
                        self._reference(step_id, ref, path)

    def _reference(self, step_id: str, ref: NodePath, where: NodePath) -> None:
        shown_ref = _path_text(ref)
        root = ref[0]
        if root == "inputs":
            _, reason = schema_at(self.spec.inputs, ref[1:])
            if reason is not None:
                self.report(where, f"{shown_ref}: the inputs schema has {reason}")
            return
        if root != "steps":
            self.report(
                where,
                f"{shown_ref}: an expression reads inputs.<field> or steps.<id>.output, "
                f"not {root!r}",
            )
            return
        if len(ref) < 2 or not isinstance(ref[1], str):
            self.report(where, f"{shown_ref}: name a step, as in steps.<id>.output")
            return
        upstream = ref[1]
        if upstream not in self.spec.steps:
            self.report(
                where, f"{shown_ref}: unknown step {upstream!r}{_hint(upstream, self.spec.steps)}"
            )
            return
        if len(ref) < 3 or ref[2] != "output":
            self.report(where, f"{shown_ref}: a step offers only steps.{upstream}.output")
            return
        self.needs[step_id].setdefault(upstream, where)
        self.output_refs.append((ref, where))

    def _outputs(self) -> None:
        """Each read of steps.<id>.output... must exist in that step's output schema."""
        for ref, where in self.output_refs:
            upstream = str(ref[1])
            _, reason = schema_at(self._output_schema(upstream), ref[3:])
            if reason is not None:
                what = self._describe(upstream)
                self.report(where, f"{_path_text(ref)}: {what} output has {reason}")

    def _output_schema(self, step_id: str) -> Schema | None:
        step = self.spec.steps[step_id]
        if isinstance(step, ApprovalStep):
            return APPROVAL_OUTPUT_SCHEMA
        resolved = self.resolved.get(step_id)
        return resolved.manifest.schemas.output if resolved is not None else None

    # --- cycles -------------------------------------------------------------------------

    def _cycles(self) -> None:
        order = list(self.spec.steps)
        graph = {step: sorted(self.needs[step], key=order.index) for step in order}
        for component in _strongly_connected(order, graph):
            first = component[0]
            if len(component) == 1 and first not in graph[first]:
                continue
            cycle = _cycle_from(first, graph, set(component))
            # Shown in the order the steps run (each needs the one before it).
            flow = list(reversed(cycle))
            consumer, producer = flow[1], flow[0]
            where = self.needs[consumer][producer]
            self.report(
                where,
                f"the steps form a cycle: {' -> '.join(flow)} (each needs the one before it)",
            )

    # --- port schemas -------------------------------------------------------------------

    def _ports(self, step_id: str, step: ConnectorStep, resolved: ResolvedConnector) -> None:
        schema = resolved.manifest.schemas.input
        here: NodePath = ("steps", step_id, "input")
        if "input" not in step.model_fields_set:
            # No input written: the connector receives {}.
            for name in _required(schema):
                self.report(
                    ("steps", step_id),
                    f"input is missing {name!r}, which {resolved.name} requires",
                    key=True,
                )
            return
        self._port_value(step.input, schema, here, resolved.name)

    def _port_value(self, value: Any, schema: Schema | None, where: NodePath, name: str) -> None:
        wanted = types(schema)
        field = _path_text(where[3:]) or "input"
        if isinstance(value, str) and OPEN in value:
            try:
                parsed = template(value)
            except ExpressionError:
                return  # already reported
            if parsed.whole is None:
                given: frozenset[str] | None = frozenset({"string"})
                source = "text"
            else:
                path = whole_path(parsed.whole)
                given, source = self._upstream(path)
                if path is not None and schema is not None:
                    self._required_from(path, schema, where, name)
            if not fits(given, wanted) and given is not None and wanted is not None:
                self.report(
                    where,
                    f"{source} is {shown(given)}, but {name} takes {shown(wanted)} for {field}",
                )
            return
        if isinstance(value, dict):
            if wanted is not None and "object" not in wanted:
                self.report(where, f"{name} takes {shown(wanted)} for {field}, not an object")
                return
            for missing in _required(schema):
                if missing not in value:
                    self.report(where, f"missing {missing!r}, which {name} requires")
            for key, item in value.items():
                sub, exists = (
                    field_schema(schema, key, strict=False) if schema is not None else (None, True)
                )
                if not exists:
                    self.report((*where, key), f"{name} takes no input field {key!r}", key=True)
                    continue
                self._port_value(item, sub, (*where, key), name)
            return
        if isinstance(value, list):
            if wanted is not None and "array" not in wanted:
                self.report(where, f"{name} takes {shown(wanted)} for {field}, not an array")
                return
            items = schema.get("items") if schema is not None else None
            for index, item in enumerate(value):
                sub = items if isinstance(items, Mapping) else None
                self._port_value(item, sub, (*where, index), name)
            return
        given = frozenset({json_type(value)})
        if not fits(given, wanted) and wanted is not None:
            self.report(where, f"{name} takes {shown(wanted)} for {field}, not {shown(given)}")

    def _upstream(self, path: NodePath | None) -> tuple[frozenset[str] | None, str]:
        """The types an exact reference yields, checking the upstream output schema."""
        if path is None or len(path) < 3 or path[0] != "steps" or path[2] != "output":
            if path is not None and path[0] == "inputs":
                sub, _ = schema_at(self.spec.inputs, path[1:])
                return types(sub), _path_text(path)
            return None, "the value"
        upstream = str(path[1])
        if upstream not in self.spec.steps:
            return None, "the value"
        sub, _ = schema_at(self._output_schema(upstream), path[3:])  # reasons: _outputs
        return types(sub), _path_text(path)

    def _describe(self, step_id: str) -> str:
        resolved = self.resolved.get(step_id)
        return f"{resolved.name}'s" if resolved is not None else "the approval's"

    def _required_from(self, path: NodePath, schema: Schema, where: NodePath, name: str) -> None:
        """A whole object mapped from upstream must bring the fields the input requires."""
        if path[0] != "steps" or len(path) < 3 or path[1] not in self.spec.steps:
            return
        upstream_schema, _ = schema_at(self._output_schema(str(path[1])), path[3:])
        if upstream_schema is None or types(upstream_schema) != frozenset({"object"}):
            return
        offered = upstream_schema.get("properties")
        if not isinstance(offered, Mapping) or upstream_schema.get("additionalProperties"):
            return
        for missing in _required(schema):
            if missing not in offered:
                self.report(
                    where,
                    f"{_path_text(path)} has no {missing!r}, which {name} requires",
                )

    # --- triggers -----------------------------------------------------------------------

    def _triggers(self) -> None:
        validator = jsonschema.Draft202012Validator(self.spec.inputs)
        for index, trigger in enumerate(self.spec.triggers):
            if trigger.type != "cron":
                continue
            for error in validator.iter_errors(trigger.input):
                path = ("triggers", index, "input", *error.absolute_path)
                self.report(path, f"the run's input does not fit inputs: {error.message}")


def _reading_order(problem: Problem) -> tuple[int, int]:
    """Problems in the order of the file; those without a position last."""
    if problem.position is None:
        return (1 << 30, 0)
    return (problem.position.line, problem.position.column)


def _required(schema: Schema | None) -> list[str]:
    required = schema.get("required") if schema is not None else None
    return [str(r) for r in required] if isinstance(required, list) else []


def _strongly_connected(order: list[str], graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each in the order the steps are written."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            found.append(sorted(component, key=order.index))

    for node in order:
        if node not in index:
            visit(node)
    return sorted(found, key=lambda c: order.index(c[0]))


def _cycle_from(start: str, graph: Mapping[str, list[str]], members: set[str]) -> list[str]:
    """One cycle through `start` inside a strongly connected component (start ... start)."""
    path = [start]
    seen = {start}

    def walk(node: str) -> bool:
        for nxt in graph[node]:
            if nxt == start:
                path.append(start)
                return True
            if nxt in members and nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                if walk(nxt):
                    return True
                path.pop()
        return False

    walk(start)
    return path


def effective_limits(step: ConnectorStep, resolved: ResolvedConnector) -> Limits:
    """The manifest's limits, lowered where the step asks."""
    limits = resolved.manifest.limits.to_limits()
    changes: dict[str, Any] = {}
    if step.limits.memory_mib is not None:
        changes["memory_bytes"] = step.limits.memory_mib * MIB
    if step.limits.fuel is not None:
        changes["fuel"] = step.limits.fuel
    if step.limits.output_kib is not None:
        changes["output_bytes"] = step.limits.output_kib * 1024
    if step.timeout is not None:
        changes["timeout_s"] = step.timeout
    return dataclasses.replace(limits, **changes)


def validate(spec: WorkflowSpec, resolver: Resolver) -> WorkflowVersion:
    """The pinned version of `spec`, or WorkflowInvalid listing every problem found."""
    checker = _Checker(spec, resolver)
    checker.check()
    if checker.problems:
        raise WorkflowInvalid(sorted(checker.problems, key=_reading_order))
    needs = {step: tuple(sorted(found)) for step, found in checker.needs.items()}
    limits = {
        step_id: effective_limits(step, checker.resolved[step_id])
        for step_id, step in spec.steps.items()
        if isinstance(step, ConnectorStep)
    }
    return build_version(spec, checker.resolved, needs, limits)


def input_problems(version: WorkflowVersion, value: Any) -> list[str]:
    """Why a run's input does not fit the workflow's inputs schema (empty when it does)."""
    validator = jsonschema.Draft202012Validator(dict(version.inputs_schema))
    return [
        f"{_path_text(('inputs', *error.absolute_path))}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    ]


__all__ = ["effective_limits", "input_problems", "validate"]
