"""{{description}}

`handle(config, input)` is the whole connector: config and input arrive parsed from JSON,
the return value goes back as JSON, and a raised `Failure` becomes the step's failure.
"""

from typing import Any

from flowforge_connector import Failure, log


def handle(config: dict[str, Any], input: dict[str, Any]) -> dict[str, Any]:
    name = input.get("name")
    if not isinstance(name, str) or not name:
        raise Failure.invalid_input("input.name must be a non-empty string")
    greeting = config.get("greeting", "Hello")
    log.info(f"greeting {name}")
    return {"message": f"{greeting}, {name}!"}
