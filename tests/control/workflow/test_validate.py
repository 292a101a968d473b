"""Validation at submit: each kind of problem, with its message, step, field and line:col."""

from __future__ import annotations

import pytest

from flowforge.control.workflow import WorkflowInvalid

from .helpers import check


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        check(text)
    return [str(p) for p in caught.value.problems]


def test_a_valid_workflow_pins_connectors_and_infers_needs() -> None:
    version = check(
        """\
name: demo
inputs:
  type: object
  properties: {text: {type: string}}
steps:
  parse:
    uses: flowforge/csv@^0.1
    input: {text: "${{ inputs.text }}"}
  keep:
    uses: flowforge/filter@^0.1
    with: {field: status, op: eq, value: paid}
    input: {items: "${{ steps.parse.output.rows }}"}
  ok:
    type: approval
    message: "Export ${{ steps.keep.output.count }} orders?"
  out:
    uses: flowforge/csv@^0.1
    with: {operation: write}
    needs: [ok]
    input: {rows: "${{ steps.keep.output.items }}"}
    when: ${{ steps.ok.output.approved }}
"""
    )
    assert list(version.steps) == ["parse", "keep", "ok", "out"]
    assert {s.id: s.needs for s in version.steps.values()} == {
        "parse": (),
        "keep": ("parse",),
        "ok": ("keep",),
        "out": ("keep", "ok"),
    }
    parse = version.steps["parse"]
    assert parse.kind == "connector" and parse.connector is not None
    assert (parse.connector.name, parse.connector.version) == ("flowforge/csv", "0.1.0")
    assert len(parse.connector.digest) == 64
    assert version.steps["ok"].kind == "approval" and version.steps["ok"].connector is None
    assert version.steps["out"].when == "steps.ok.output.approved"


def test_unknown_steps_in_needs_and_expressions() -> None:
    assert problems(
        """\
name: demo
steps:
  fetch:
    uses: flowforge/json-transform@^0.1
    with: {expression: a}
  use:
    uses: flowforge/json-transform@^0.1
    with: {expression: a}
    needs: [fech]
    input: {x: "${{ steps.fetsh.output.body }}"}
    when: steps.nowhere.output
"""
    ) == [
        "wf.yaml:9:13: step 'use': needs[0]: needs unknown step 'fech'; did you mean 'fetch'?",
        "wf.yaml:10:16: step 'use': input.x: steps.fetsh.output.body: unknown step 'fetsh'; "
        "did you mean 'fetch'?",
        "wf.yaml:11:11: step 'use': when: steps.nowhere.output: unknown step 'nowhere'",
    ]


def test_an_unknown_step_mapped_whole_is_one_problem() -> None:
    assert problems(
        "name: demo\nsteps:\n  a:\n    uses: acme/sink@^1\n    input: ${{ steps.b.output }}\n"
    ) == ["wf.yaml:5:12: step 'a': input: steps.b.output: unknown step 'b'"]


def test_references_must_read_inputs_or_a_step_output() -> None:
    assert problems(
        """\
name: demo
steps:
  a:
    uses: flowforge/json-transform@^0.1
    with: {expression: a}
  b:
    uses: flowforge/json-transform@^0.1
    with: {expression: a}
    input: {x: "${{ env.HOME }}", y: "${{ steps.a.status }}", z: "${{ steps }}"}
"""
    ) == [
        "wf.yaml:9:16: step 'b': input.x: env.HOME: an expression reads inputs.<field> or "
        "steps.<id>.output, not 'env'",
        "wf.yaml:9:38: step 'b': input.y: steps.a.status: a step offers only steps.a.output",
        "wf.yaml:9:66: step 'b': input.z: steps: name a step, as in steps.<id>.output",
    ]


def test_invalid_jmespath_is_reported_with_its_position() -> None:
    assert problems(
        """\
name: demo
steps:
  a:
    uses: flowforge/json-transform@^0.1
    with: {expression: a}
    input:
      n: ${{ length(inputs.items }}
    when: ${{ inputs.a ==== 1 }}
"""
    ) == [
        "wf.yaml:7:10: step 'a': input.n: invalid JMESPath 'length(inputs.items': it is "
        "incomplete (at character 19)",
        "wf.yaml:8:11: step 'a': when: invalid JMESPath 'inputs.a ==== 1': invalid token "
        "(at character 11)",
    ]


def test_unknown_inputs_fields_are_checked_against_the_inputs_schema() -> None:
    assert problems(
        """\
name: demo
inputs:
  type: object
  properties:
    user: {type: object, properties: {id: {type: integer}}, required: [id]}
    tags: {type: array, items: {type: string}}
    extra: {type: object, additionalProperties: true}
steps:
  a:
    uses: flowforge/json-transform@^0.1
    with: {expression: a}
    input:
      ok: "${{ inputs.user.id }} ${{ inputs.tags[0] }} ${{ inputs.extra.anything }}"
      typo: ${{ inputs.usr }}
      deep: ${{ inputs.user.name }}
      not_object: ${{ inputs.tags.first }}
"""
    ) == [
        "wf.yaml:14:13: step 'a': input.typo: inputs.usr: the inputs schema has no field 'usr' "
        "(it has: extra, tags, user)",
        "wf.yaml:15:13: step 'a': input.deep: inputs.user.name: the inputs schema has no field "
        "'name' in user (it has: id)",
        "wf.yaml:16:19: step 'a': input.not_object: inputs.tags.first: the inputs schema has "
        "tags is array, not an object with 'first'",
    ]


def test_cycles_are_named() -> None:
    assert problems(
        """\
name: demo
steps:
  a:
    uses: flowforge/json-transform@^0.1
    with: {expression: x}
    input: ${{ steps.c.output }}
  b:
    uses: flowforge/json-transform@^0.1
    with: {expression: x}
    needs: [a]
  c:
    uses: flowforge/json-transform@^0.1
    with: {expression: x}
    input: {v: "${{ steps.b.output.result }}"}
  d:
    uses: flowforge/json-transform@^0.1
    with: {expression: x}
    needs: [d]
"""
    ) == [
        "wf.yaml:10:13: step 'b': needs[0]: the steps form a cycle: a -> b -> c -> a "
        "(each needs the one before it)",
        "wf.yaml:18:13: step 'd': needs[0]: the steps form a cycle: d -> d "
        "(each needs the one before it)",
    ]


def test_unresolvable_connectors_say_why() -> None:
    assert problems(
        """\
name: demo
steps:
  a:
    uses: acme/nowhere@^1
  b:
    uses: flowforge/csv@^2.0
  c:
    uses: flowforge/csv@>=0.2,<1
"""
    ) == [
        "wf.yaml:4:11: step 'a': uses: cannot resolve acme/nowhere@^1: acme/nowhere is not "
        "installed",
        "wf.yaml:6:11: step 'b': uses: cannot resolve flowforge/csv@^2.0: no installed version "
        "of flowforge/csv matches '^2.0' (0.1.0)",
        "wf.yaml:8:11: step 'c': uses: cannot resolve flowforge/csv@>=0.2,<1: no installed "
        "version of flowforge/csv matches '>=0.2,<1' (0.1.0)",
    ]


def test_an_upstream_output_field_that_does_not_exist() -> None:
    assert problems(
        """\
name: demo
steps:
  src:
    uses: acme/source@^1
  sink:
    uses: acme/sink@^1
    input:
      items: ${{ steps.src.output.rowz }}
      title: "${{ steps.src.output.meta.anything }} of ${{ steps.src.output.count.value }}"
"""
    ) == [
        "wf.yaml:8:14: step 'sink': input.items: steps.src.output.rowz: acme/source's output "
        "has no field 'rowz' (it has: count, label, meta, rows)",
        "wf.yaml:9:14: step 'sink': input.title: steps.src.output.count.value: acme/source's "
        "output has count is integer, not an object with 'value'",
    ]


def test_an_upstream_output_whose_type_does_not_fit_the_downstream_input() -> None:
    assert problems(
        """\
name: demo
steps:
  src:
    uses: acme/source@^1
  sink:
    uses: acme/sink@^1
    input:
      items: ${{ steps.src.output.count }}
      title: ${{ steps.src.output.rows }}
      size: ${{ steps.src.output.count }}
  text:
    uses: acme/sink@^1
    input:
      items: "rows: ${{ steps.src.output.rows }}"
      size: "big"
"""
    ) == [
        "wf.yaml:8:14: step 'sink': input.items: steps.src.output.count is integer, but "
        "acme/sink takes array for items",
        "wf.yaml:9:14: step 'sink': input.title: steps.src.output.rows is array, but acme/sink "
        "takes string for title",
        "wf.yaml:14:14: step 'text': input.items: text is string, but acme/sink takes array "
        "for items",
        "wf.yaml:15:13: step 'text': input.size: acme/sink takes number for size, not string",
    ]


def test_a_missing_required_input() -> None:
    assert problems(
        """\
name: demo
steps:
  src:
    uses: acme/source@^1
  none:
    uses: acme/sink@^1
  partial:
    uses: acme/sink@^1
    input: {title: x}
  whole:
    uses: acme/sink@^1
    input: ${{ steps.src.output }}
  unknown_field:
    uses: acme/sink@^1
    input: {items: [], colour: red}
"""
    ) == [
        "wf.yaml:5:3: step 'none': input is missing 'items', which acme/sink requires",
        "wf.yaml:9:12: step 'partial': input: missing 'items', which acme/sink requires",
        "wf.yaml:12:12: step 'whole': input: steps.src.output has no 'items', which acme/sink "
        "requires",
        "wf.yaml:15:24: step 'unknown_field': input.colour: acme/sink takes no input field "
        "'colour'",
    ]


def test_grants_beyond_what_the_manifest_declares() -> None:
    assert problems(
        """\
name: demo
steps:
  src:
    uses: acme/source@^1
    network:
      - api.example.com
      - "*.eu.example.com"
      - example.com
      - db.internal:5432
      - db.internal
      - api.example.com:8443
      - evil.com
    secrets: {token: api-token, password: db-password}
  pure:
    uses: flowforge/encode@^0.1
    with: {operation: encode, scheme: hex}
    input: {data: x}
    network: [api.example.com]
    secrets: {token: t}
"""
    ) == [
        "wf.yaml:8:9: step 'src': network[2]: grants 'example.com', beyond what acme/source "
        "declares (*.example.com, db.internal:5432)",
        "wf.yaml:10:9: step 'src': network[4]: grants 'db.internal', beyond what acme/source "
        "declares (*.example.com, db.internal:5432)",
        "wf.yaml:11:9: step 'src': network[5]: grants 'api.example.com:8443', beyond what "
        "acme/source declares (*.example.com, db.internal:5432)",
        "wf.yaml:12:9: step 'src': network[6]: grants 'evil.com', beyond what acme/source "
        "declares (*.example.com, db.internal:5432)",
        "wf.yaml:13:33: step 'src': secrets.password: grants secret 'password', which "
        "acme/source does not declare (it declares token)",
        "wf.yaml:18:15: step 'pure': network[0]: grants 'api.example.com', beyond what "
        "flowforge/encode declares (no network access)",
        "wf.yaml:19:15: step 'pure': secrets.token: grants secret 'token', which "
        "flowforge/encode does not declare (it declares no secrets)",
    ]


def test_config_limits_and_expressions_in_config() -> None:
    assert problems(
        """\
name: demo
steps:
  a:
    uses: flowforge/encode@^0.1
    with: {operation: squash, scheme: hex, url: "${{ inputs.url }}"}
    input: {data: x}
    limits: {memory_mib: 64, fuel: 1000}
    timeout: 1m
"""
    ) == [
        "wf.yaml:5:11: step 'a': with: flowforge/encode config: Additional properties are not "
        "allowed ('url' was unexpected)",
        "wf.yaml:5:23: step 'a': with.operation: flowforge/encode config: 'squash' is not one of "
        "['encode', 'decode']",
        "wf.yaml:5:49: step 'a': with.url: with is fixed for every run; put ${{ }} expressions "
        "in input instead",
        "wf.yaml:7:26: step 'a': limits.memory_mib: 64 is above flowforge/encode's limit 32; a "
        "step may only lower a connector's limits",
        "wf.yaml:8:14: step 'a': timeout: 60s is above flowforge/encode's limit of 5s; a step "
        "may only lower a connector's limits",
    ]


def test_a_cron_trigger_input_must_fit_the_inputs_schema() -> None:
    assert problems(
        """\
name: demo
inputs: {type: object, required: [n], properties: {n: {type: integer}}}
steps:
  a: {uses: flowforge/json-transform@^0.1, with: {expression: n}, input: "${{ inputs }}"}
triggers:
  - {type: cron, schedule: "@hourly", input: {n: "three"}}
"""
    ) == [
        "wf.yaml:6:50: triggers[0].input.n: the run's input does not fit inputs: 'three' is "
        "not of type 'integer'"
    ]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        """\
name: demo
steps:
  a:
    uses: acme/nowhere@^1
    needs: [b, zz]
  b:
    uses: acme/sink@^1
    input: {items: "${{ steps.a.output }}", title: "${{ inputs.x[ }}"}
    network: [evil.com]
"""
    )
    assert len(found) == 5, found
    assert any("cycle: a -> b -> a" in p for p in found)
