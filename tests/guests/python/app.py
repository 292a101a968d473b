# mypy: disable-error-code="import-not-found"
# (`flowforge_connector`, the guest SDK, is on componentize-py's path only during a build.)
"""Test connector in Python: each `action` of the input exercises one path through the host.

Built by `flowforge.control.build` with componentize-py against the guest SDK
(`connectors/sdk/python/flowforge_connector`), which parses the JSON, maps `Failure` to the
WIT `err(failure)` and turns host refusals into failures.
"""

from typing import Any

from flowforge_connector import Failure, fetch, log, secret


def handle(config: Any, request: Any) -> Any:
    if not isinstance(request, dict):
        raise Failure.invalid_input("input must be a JSON object")
    action = request.get("action")
    if action == "echo":
        return request
    if action == "log":
        log(request.get("level", "info"), str(request["message"]))
        return {"logged": True}
    if action == "secret":
        return {"value": secret(str(request["name"]))}
    if action == "fetch":
        response = fetch("GET", str(request["url"]))
        return {"status": response.status, "body": response.text}
    if action == "fail":
        # An unknown kind is the test's mistake: Failure refuses it, which reports internal.
        raise Failure(str(request["kind"]), str(request["message"]),
                      retry_after_ms=request.get("retry_after_ms"))  # fmt: skip
    if action == "print":
        print(str(request.get("message", "")))
        return {"printed": True}
    raise Failure.invalid_input(f"unknown action: {action!r}")
