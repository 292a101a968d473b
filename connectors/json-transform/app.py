"""flowforge/json-transform: apply a JMESPath expression (from the config) to the input."""

from typing import Any

import jmespath
import jmespath.exceptions
from flowforge_connector import Failure


def handle(config: dict[str, Any], input: Any) -> dict[str, Any]:
    expression = config.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise Failure.invalid_config("config.expression must be a non-empty JMESPath expression")
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.ParseError as exc:
        raise Failure.invalid_config(f"config.expression is not valid JMESPath: {exc}") from None
    try:
        result = compiled.search(input)
    except jmespath.exceptions.JMESPathError as exc:
        # A type error or an unknown function met while evaluating: the data does not fit.
        raise Failure.invalid_input(f"cannot apply {expression!r} to the input: {exc}") from None
    return {"result": result}
