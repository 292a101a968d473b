# mypy: disable-error-code="import-not-found"
# (`flowforge_connector`, the guest SDK, is on componentize-py's path only during a build.)
"""The Python SDK's test guest: the status convention probe shared by the four SDKs'
tests (test_status_convention.py)."""

from typing import Any

from flowforge_connector import Failure, fetch


def handle(config: dict[str, Any], input: Any) -> dict[str, Any]:
    if not isinstance(input, dict) or not isinstance(input.get("url"), str):
        raise Failure.invalid_input("input.url must be a string")
    response = fetch("GET", input["url"], timeout_ms=2000)
    if input.get("check"):
        response.raise_for_status()
    return {"status": response.status, "ok": response.ok}
