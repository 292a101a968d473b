"""flowforge/template: render text from input fields.

`${name}` and `$name` insert a field, `${user.name}` follows a dotted path through objects
(and list indexes: `${items.0}`), `$$` is a literal `$`. A `$` before anything else is
kept as it is, so prices such as `$5` need no escaping.
"""

import json
import re
from typing import Any

from flowforge_connector import Failure

_PLACEHOLDER = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^{}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<open>\{))"
)
_PATH = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_MISSING: Any = object()


def _lookup(data: Any, path: str) -> Any:
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Numbers, booleans, null, lists and objects print as JSON (true, not True).
    return json.dumps(value, ensure_ascii=False)


def _check(template: str) -> list[str]:
    """The template's placeholder paths; invalid-config on a malformed placeholder."""
    paths: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        if match.group("open") is not None:
            raise Failure.invalid_config(
                f"config.template: '${{' at offset {match.start()} is never closed with '}}'"
            )
        braced = match.group("braced")
        if braced is not None:
            path = braced.strip()
            if not _PATH.match(path):
                raise Failure.invalid_config(
                    f"config.template: '${{{braced}}}' at offset {match.start()} is not a "
                    "field name or dotted path such as ${user.name}"
                )
            paths.append(path)
        elif match.group("bare") is not None:
            paths.append(match.group("bare"))
    return paths


def render(template: str, data: Any, missing: str) -> str:
    _check(template)
    absent: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar") is not None:
            return "$"
        path = (match.group("braced") or match.group("bare")).strip()
        value = _lookup(data, path)
        if value is _MISSING:
            absent.append(path)
            return ""
        return _text(value)

    text = _PLACEHOLDER.sub(replace, template)
    if absent and missing == "error":
        names = ", ".join(dict.fromkeys(absent))
        raise Failure.invalid_input(f"the input has no field {names} (used by the template)")
    return text


def handle(config: dict[str, Any], input: Any) -> dict[str, Any]:
    template = config.get("template")
    if not isinstance(template, str):
        raise Failure.invalid_config("config.template must be a string")
    missing = config.get("missing", "error")
    if missing not in ("error", "empty"):
        raise Failure.invalid_config("config.missing must be 'error' or 'empty'")
    return {"text": render(template, input, missing)}
