"""Immutable versions: one hash per content, pinned to digests; diffs; the ready set."""

from __future__ import annotations

from flowforge.control.workflow import (
    RetryPolicy,
    StaticResolver,
    diff,
    is_finished,
    load_spec_text,
    ready_steps,
    validate,
)

from .helpers import check, core_manifests, resolved

WORKFLOW = """\
name: demo
inputs: {type: object, properties: {text: {type: string}}}
steps:
  parse:
    uses: flowforge/csv@^0.1
    input: {text: "${{ inputs.text }}"}
    timeout: 5s
  keep:
    uses: flowforge/filter@^0.1
    with: {field: status, op: eq, value: paid}
    input: {items: "${{ steps.parse.output.rows }}"}
    retry: {max_attempts: 3, retry_on: [unavailable, timeout]}
triggers:
  - {type: manual}
  - {type: nats, subject: orders.new}
"""

# The same workflow: other key order, flow style, spelling of durations and defaults,
# explicit needs that references imply, list order where order means nothing.
SAME = """\
triggers:
  - type: nats
    subject: orders.new
  - type: manual
steps:
  keep:
    needs: [parse]
    retry:
      retry_on: [timeout, unavailable]
      max_attempts: 3
      multiplier: 2
    input:
      items: ${{ steps.parse.output.rows }}
    with:
      value: paid
      op: eq
      field: status
    uses: flowforge/filter@^0.1
  parse:
    timeout: 5000ms
    uses: flowforge/csv@^0.1
    input: {text: "${{inputs.text}}"}
    pool: default
name: demo
inputs:
  properties:
    text:
      type: string
  type: object
"""


def test_the_same_content_is_the_same_version() -> None:
    a = check(WORKFLOW)
    b = check(SAME)
    assert a.version == b.version
    assert a.canonical == b.canonical
    assert len(a.version) == 64
    assert diff(a, b) == []


def test_a_new_digest_behind_the_same_range_is_a_new_version() -> None:
    manifests = core_manifests()
    before = StaticResolver(resolved(m) for m in manifests)
    after = StaticResolver(
        resolved(m, digest="f" * 64 if m.name == "flowforge/csv" else None) for m in manifests
    )
    spec = load_spec_text(WORKFLOW, "wf.yaml")
    a = validate(spec, before)
    b = validate(spec, after)
    assert a.version != b.version
    old_digest = a.steps["parse"].connector.digest if a.steps["parse"].connector else ""
    assert diff(a, b) == [f'~ pins.parse.digest: "{old_digest}" -> "{"f" * 64}"']


def test_a_changed_workflow_diffs_readably() -> None:
    a = check(WORKFLOW)
    changed = (
        WORKFLOW.replace("value: paid", "value: open").replace("    timeout: 5s\n", "")
        + "timeout: 1h\n"
    )
    b = check(changed)
    assert a.version != b.version
    assert diff(a, b) == [
        '~ steps.keep.with.value: "paid" -> "open"',
        "~ steps.parse.timeout: 5.0 -> null",
        "~ timeout: null -> 3600.0",
    ]
    grown = check(
        WORKFLOW.replace(
            "triggers:",
            "  ok: {type: approval, needs: [keep]}\ntriggers:",
        )
    )
    assert diff(a, grown) == [
        '+ steps.ok: {"description": null, "message": null, "needs": ["keep"], '
        '"on_timeout": "reje...'
    ]


def test_planned_steps_carry_what_dispatch_needs() -> None:
    version = check(WORKFLOW)
    keep = version.steps["keep"]
    assert keep.config == {"field": "status", "op": "eq", "value": "paid"}
    assert keep.input_mapping == {"items": "${{ steps.parse.output.rows }}"}
    assert keep.retry == RetryPolicy(
        max_attempts=3,
        initial_backoff_ms=500,
        max_backoff_ms=60_000,
        multiplier=2.0,
        jitter=0.2,
        retry_on=frozenset({"unavailable", "timeout"}),
    )
    assert keep.limits is not None and keep.limits.memory_bytes == 64 << 20
    assert keep.timeout_s == 10.0  # the filter manifest's own limit
    parse = version.steps["parse"]
    assert parse.timeout_s == 5.0 and parse.limits is not None and parse.limits.timeout_s == 5.0
    assert parse.grants.network == () and dict(parse.grants.secrets) == {}


def test_retry_backoff_grows_caps_jitters_and_honours_retry_after() -> None:
    policy = RetryPolicy(
        max_attempts=5, initial_backoff_ms=100, max_backoff_ms=1000, multiplier=3, jitter=0.5,
        retry_on=frozenset({"unavailable"}),
    )  # fmt: skip
    assert [policy.backoff_ms(n) for n in (1, 2, 3, 4)] == [100, 300, 900, 1000]
    assert policy.backoff_ms(1, random=0.0) == 50
    assert policy.backoff_ms(1, random=0.999) == 149
    assert policy.backoff_ms(1, retry_after_ms=2500) == 2500
    assert policy.should_retry("unavailable", 4)
    assert not policy.should_retry("unavailable", 5)
    assert not policy.should_retry("invalid-input", 1)


def test_ready_steps_follow_the_needs() -> None:
    version = check(
        """\
name: fan
steps:
  a: {uses: flowforge/json-transform@^0.1, with: {expression: x}}
  b: {uses: flowforge/json-transform@^0.1, with: {expression: x}, needs: [a]}
  c: {uses: flowforge/json-transform@^0.1, with: {expression: x}, needs: [a]}
  d: {uses: flowforge/json-transform@^0.1, with: {expression: x}, needs: [b, c]}
"""
    )
    assert ready_steps(version, set()) == ("a",)
    assert ready_steps(version, set(), {"a"}) == ()
    assert ready_steps(version, {"a"}) == ("b", "c")
    assert ready_steps(version, {"a", "b"}, {"c"}) == ()
    assert ready_steps(version, {"a", "b", "c"}) == ("d",)
    assert not is_finished(version, {"a", "b", "c"})
    assert is_finished(version, {"a", "b", "c", "d"})
    assert version.dependents() == {"a": ("b", "c"), "b": ("d",), "c": ("d",), "d": ()}
