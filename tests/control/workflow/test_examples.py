"""The example workflows validate against the core connectors and run their expressions."""

from __future__ import annotations

from flowforge.control.workflow import (
    StaticResolver,
    evaluate_input,
    evaluate_when,
    input_problems,
    load_spec,
    ready_steps,
    validate,
)

from .helpers import EXAMPLES, core_manifests, resolved


def core() -> StaticResolver:
    return StaticResolver(resolved(m) for m in core_manifests())


def test_greet_user_validates_and_maps_its_inputs() -> None:
    version = validate(load_spec(EXAMPLES / "greet-user.yaml"), core())
    assert list(version.steps) == ["fetch", "pick", "greet"]
    fetch = version.steps["fetch"]
    assert fetch.grants.network == ("api.example.com",)
    assert dict(fetch.grants.secrets) == {"token": "example-api-token"}
    assert fetch.retry.max_attempts == 4 and fetch.timeout_s == 20.0
    assert version.timeout_s == 120.0 and version.concurrency == 20
    context = {
        "inputs": {"user_id": 42},
        "steps": {"fetch": {"output": {"status": 200, "body": {"name": "Ada"}}}},
    }
    assert evaluate_input(fetch.input_mapping, context) == {"id": 42}
    assert evaluate_input(version.steps["pick"].input_mapping, context) == {"name": "Ada"}
    assert input_problems(version, {"user_id": 42}) == []
    assert input_problems(version, {"user_id": "42", "extra": 1}) == [
        "inputs: Additional properties are not allowed ('extra' was unexpected)",
        "inputs.user_id: '42' is not of type 'integer'",
    ]


def test_paid_orders_export_validates_and_skips_when_nothing_is_paid() -> None:
    version = validate(load_spec(EXAMPLES / "paid-orders-export.yaml"), core())
    assert [s.id for s in version.steps.values()] == ["parse", "paid", "write", "encode"]
    assert ready_steps(version, {"parse"}) == ("paid",)
    write = version.steps["write"]
    assert write.when is not None
    none_paid = {"inputs": {}, "steps": {"paid": {"output": {"items": [], "count": 0}}}}
    some_paid = {"inputs": {}, "steps": {"paid": {"output": {"items": [{}], "count": 1}}}}
    assert not evaluate_when(write.when, none_paid)
    assert evaluate_when(write.when, some_paid)
    assert evaluate_input(write.input_mapping, some_paid) == {"rows": [{}]}
