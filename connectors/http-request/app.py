"""flowforge/http-request: call a REST endpoint.

The URL is a template, `https://api.example.com/users/{id}`, filled from the input's
fields with each value percent-encoded (so `a/b c` becomes `a%2Fb%20c` and cannot change
the path). Authentication comes from a secret the workflow grants; the connector never
returns the request it sent, so the credential does not reach the step's output.
"""

import base64
import re
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from flowforge_connector import Failure, Response, fetch, log, secret

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_SCHEMES = ("bearer", "basic", "header")
# Below the manifest's 30 s wall-clock limit, so a server that never answers is reported as
# `unavailable` (retryable) instead of the sandbox stopping the step.
DEFAULT_TIMEOUT_MS = 20_000


def _lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise Failure.invalid_input(f"the URL template needs input.{path}, which is missing")
        value = value[part]
    return value


def _as_text(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise Failure.invalid_input(f"input.{path} must be a string or a number to go into the URL")


def fill_url(template: str, data: dict[str, Any]) -> str:
    """The template with every `{field}` replaced by the input's value, percent-encoded."""

    def replace(match: re.Match[str]) -> str:
        path = match.group(1).strip()
        if not _NAME.match(path):
            raise Failure.invalid_config(f"config.url: {{{match.group(1)}}} is not a field name")
        # safe="" encodes "/" too: a value is one path segment or query value, never more.
        return quote(_as_text(_lookup(data, path), path), safe="")

    url = _PLACEHOLDER.sub(replace, template)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failure.invalid_config(f"config.url must be an http(s) URL, got {template!r}")
    return url


def _with_query(url: str, query: Any) -> str:
    if query is None:
        return url
    if not isinstance(query, dict):
        raise Failure.invalid_input("input.query must be an object of query parameters")
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            pairs.append((str(key), _as_text(item, f"query.{key}")))
    if not pairs:
        return url
    separator = "&" if urlsplit(url).query else "?"
    return url + separator + urlencode(pairs, quote_via=quote)


def _auth_header(auth: Any) -> tuple[str, str] | None:
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise Failure.invalid_config("config.auth must be an object")
    scheme = auth.get("scheme", "bearer")
    if scheme not in _SCHEMES:
        raise Failure.invalid_config(f"config.auth.scheme must be one of {', '.join(_SCHEMES)}")
    value = secret(str(auth.get("secret", "token")))
    if scheme == "bearer":
        return "Authorization", f"Bearer {value}"
    if scheme == "basic":
        if ":" not in value:
            raise Failure.invalid_config("a basic-auth secret must hold user:password")
        return "Authorization", "Basic " + base64.b64encode(value.encode("utf-8")).decode("ascii")
    header = auth.get("header")
    if not isinstance(header, str) or not header:
        raise Failure.invalid_config("config.auth.header names the header for scheme 'header'")
    return header, value


def _headers(config: dict[str, Any], input: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for source, where in ((config.get("headers"), "config"), (input.get("headers"), "input")):
        if source is None:
            continue
        if not isinstance(source, dict):
            raise Failure.invalid_input(f"{where}.headers must be an object")
        headers.update({str(k): str(v) for k, v in source.items()})
    return headers


def _result(response: Response, keep: Any) -> dict[str, Any]:
    headers = response.header_dict()
    if isinstance(keep, list):
        wanted = {str(name).lower() for name in keep}
        headers = {k: v for k, v in headers.items() if k in wanted}
    body: Any = response.text
    if response.is_json and response.body:
        body = response.json()
    return {"status": response.status, "headers": headers, "body": body}


def handle(config: dict[str, Any], input: Any) -> dict[str, Any]:
    if not isinstance(input, dict):
        raise Failure.invalid_input("input must be an object")
    template = config.get("url")
    if not isinstance(template, str):
        raise Failure.invalid_config("config.url is required: the URL template to call")
    method = str(config.get("method", "GET")).upper()
    if method not in _METHODS:
        raise Failure.invalid_config(f"config.method must be one of {', '.join(_METHODS)}")

    url = _with_query(fill_url(template, input), input.get("query"))
    headers = _headers(config, input)
    auth = _auth_header(config.get("auth"))
    if auth is not None:
        headers[auth[0]] = auth[1]
    headers.setdefault("Accept", "application/json")
    body = input.get("body")
    timeout = config.get("timeout_ms", DEFAULT_TIMEOUT_MS)

    log.debug(f"{method} {url}")
    if body is None:
        response = fetch(method, url, headers=headers, timeout_ms=timeout)
    else:
        response = fetch(method, url, headers=headers, json=body, timeout_ms=timeout)
    if config.get("fail_on_status", True):
        response.raise_for_status(f"{method} {url}")
    return _result(response, config.get("response_headers"))
