"""`${{ }}` expressions: whole values, interpolated text, conditions and references."""

from __future__ import annotations

from typing import Any

import pytest

from flowforge.control.workflow import ExpressionError, evaluate_input, evaluate_when
from flowforge.control.workflow.expressions import (
    condition,
    expression_references,
    template,
    whole_path,
)

CONTEXT: dict[str, Any] = {
    "inputs": {"user": {"id": 7, "name": "Ada"}, "limit": 3, "tags": ["a", "b"]},
    "steps": {
        "fetch": {"output": {"status": 200, "body": {"items": [{"id": 1}, {"id": 2}]}}},
        "empty": {"output": None},
    },
}


def test_a_whole_string_expression_yields_the_value_itself() -> None:
    mapping = {
        "n": "${{ inputs.limit }}",
        "user": "${{inputs.user}}",
        "ids": "${{ steps.fetch.output.body.items[*].id }}",
        "count": "${{ length(steps.fetch.output.body.items) }}",
    }
    assert evaluate_input(mapping, CONTEXT) == {
        "n": 3,
        "user": {"id": 7, "name": "Ada"},
        "ids": [1, 2],
        "count": 2,
    }
    assert evaluate_input("${{ inputs.tags }}", CONTEXT) == ["a", "b"]


def test_embedded_expressions_are_interpolated_as_text() -> None:
    text = "user ${{ inputs.user.name }} (#${{ inputs.user.id }}) tags=${{ inputs.tags }}"
    assert evaluate_input(text, CONTEXT) == 'user Ada (#7) tags=["a","b"]'
    assert evaluate_input(" ${{ inputs.limit }}", CONTEXT) == " 3"  # not the whole string
    assert evaluate_input("[${{ inputs.nothing }}]", CONTEXT) == "[]"  # null is nothing


def test_missing_paths_are_null_and_literals_pass_through() -> None:
    mapping = {
        "a": "${{ inputs.nothing.deeper }}",
        "b": "${{ steps.empty.output.x }}",
        "c": "${{ steps.never_ran.output }}",
        "literal": ["plain", 1, True, None, {"k": "v"}],
    }
    assert evaluate_input(mapping, CONTEXT) == {
        "a": None,
        "b": None,
        "c": None,
        "literal": ["plain", 1, True, None, {"k": "v"}],
    }


def test_conditions_use_jmespath_truth() -> None:
    assert evaluate_when("${{ inputs.limit > `2` }}", CONTEXT)
    assert evaluate_when("inputs.limit > `2`", CONTEXT)  # the bare form works too
    assert not evaluate_when("${{ inputs.limit > `5` }}", CONTEXT)
    assert not evaluate_when("inputs.missing", CONTEXT)
    assert not evaluate_when("inputs.tags[?@ == 'z']", CONTEXT)  # an empty list is false
    assert evaluate_when("`0`", CONTEXT)  # 0 is true in JMESPath
    assert condition("  ${{ a.b }} ") == "a.b"


def test_invalid_expressions_say_what_and_where() -> None:
    with pytest.raises(ExpressionError) as caught:
        template("total: ${{ items[? }}")
    assert str(caught.value) == "invalid JMESPath 'items[?': it is incomplete (at character 7)"
    assert caught.value.offset == 18
    with pytest.raises(ExpressionError, match=r"'\$\{\{' at character 4 has no closing '\}\}'"):
        template("abc ${{ inputs.x")
    with pytest.raises(ExpressionError, match=r"the expression \$\{\{ \}\} is empty"):
        template("${{   }}")
    with pytest.raises(ExpressionError, match="Unknown token"):
        template("${{ a ++ b }}")


def test_evaluation_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="length"):
        evaluate_input("${{ length(inputs.limit) }}", CONTEXT)


def test_references_are_the_static_paths_read_from_the_root() -> None:
    assert expression_references("steps.fetch.output.body.items[0].id") == (
        ("steps", "fetch", "output", "body", "items", 0, "id"),
    )
    assert expression_references("{a: inputs.x, b: length(steps.b.output.rows)}") == (
        ("inputs", "x"),
        ("steps", "b", "output", "rows"),
    )
    # Inside a projection, filter or pipe the fields belong to each element, not the root.
    assert expression_references("steps.a.output.items[?inputs > `1`].steps") == (
        ("steps", "a", "output", "items"),
    )
    assert expression_references("steps.a.output | inputs") == (("steps", "a", "output"),)
    assert expression_references("inputs.x || steps.c.output") == (
        ("inputs", "x"),
        ("steps", "c", "output"),
    )


def test_whole_path_is_set_only_for_a_plain_path() -> None:
    whole = template("${{ steps.a.output.rows[0] }}").whole
    assert whole is not None and whole_path(whole) == ("steps", "a", "output", "rows", 0)
    computed = template("${{ length(steps.a.output.rows) }}").whole
    assert computed is not None and whole_path(computed) is None
    projected = template("${{ steps.a.output.rows[*].id }}").whole
    assert projected is not None and whole_path(projected) is None
    assert template("id=${{ inputs.id }}").whole is None
