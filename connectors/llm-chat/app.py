"""flowforge/llm-chat: one OpenAI-compatible chat completion.

`POST {base_url}/v1/chat/completions` with the key from the secret `api-key` as a Bearer
token. A 429 comes back as rate-limited with the server's Retry-After, 5xx as
unavailable, so the engine knows to retry them.
"""

from typing import Any

from flowforge_connector import Failure, fetch, log, secret

_ROLES = ("system", "user", "assistant", "tool", "developer")
# Below the manifest's 120 s wall-clock limit, so an endpoint that never answers is
# reported as `unavailable` (retryable) instead of the sandbox stopping the step.
DEFAULT_TIMEOUT_MS = 90_000


def _endpoint(base_url: Any) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise Failure.invalid_config("config.base_url must be an http(s) URL")
    base = base_url.rstrip("/")
    # Accept https://host and https://host/v1 alike.
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return f"{base}/v1/chat/completions"


def _messages(config: dict[str, Any], input: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = config.get("system_prompt")
    if system:
        messages.append({"role": "system", "content": str(system)})
    given = input.get("messages")
    prompt = input.get("prompt")
    if given is None and prompt is None:
        raise Failure.invalid_input("give input.messages (a list) or input.prompt (text)")
    if given is not None:
        if not isinstance(given, list) or not given:
            raise Failure.invalid_input("input.messages must be a non-empty list")
        for index, message in enumerate(given):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise Failure.invalid_input(
                    f"input.messages[{index}] needs a role ({', '.join(_ROLES)}) and content"
                )
            if "content" not in message:
                raise Failure.invalid_input(f"input.messages[{index}] has no content")
            messages.append(message)
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise Failure.invalid_input("input.prompt must be non-empty text")
        messages.append({"role": "user", "content": prompt})
    return messages


def _request(config: dict[str, Any], input: dict[str, Any]) -> dict[str, Any]:
    model = config.get("model")
    if not isinstance(model, str) or not model:
        raise Failure.invalid_config("config.model is required, e.g. gpt-4o-mini")
    request: dict[str, Any] = {"model": model, "messages": _messages(config, input)}
    for name in ("temperature", "max_tokens"):
        if config.get(name) is not None:
            request[name] = config[name]
    return request


def _result(document: Any) -> dict[str, Any]:
    try:
        choice = document["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise Failure.unavailable("the endpoint's answer has no choices[0].message") from None
    usage = document.get("usage") or {}
    return {
        "text": text,
        "finish_reason": choice.get("finish_reason"),
        "model": document.get("model"),
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"),
        },
    }


def handle(config: dict[str, Any], input: Any) -> dict[str, Any]:
    if not isinstance(input, dict):
        raise Failure.invalid_input("input must be an object with messages or prompt")
    url = _endpoint(config.get("base_url"))
    request = _request(config, input)
    key = secret("api-key")
    log.info(f"chat completion: {request['model']}, {len(request['messages'])} message(s)")
    response = fetch(
        "POST",
        url,
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
        json=request,
        timeout_ms=config.get("timeout_ms", DEFAULT_TIMEOUT_MS),
    )
    response.raise_for_status("chat completion")
    result = _result(response.json())
    usage = result["usage"]
    log.info(f"finish_reason={result['finish_reason']} total_tokens={usage['total_tokens']}")
    return result
