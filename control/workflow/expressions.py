"""`${{ expr }}` expressions: JMESPath over `inputs` and `steps.<id>.output`. No code runs.

A string that is exactly one expression evaluates to the value itself (a number, an
object ...); expressions embedded in longer text are interpolated as text (null as
nothing, strings as they are, anything else as compact JSON). A path that leads nowhere
is null, as JMESPath has it. `references` reads an expression's static paths from the
root, so the validator can check them and infer `needs`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import jmespath
from jmespath import exceptions as jmes_errors
from jmespath.parser import ParsedResult

from .errors import NodePath

OPEN: Final = "${{"
CLOSE: Final = "}}"
_CACHE: Final = 4096

Context = Mapping[str, Any]  # {"inputs": ..., "steps": {id: {"output": ...}}}


class ExpressionError(ValueError):
    """An expression that cannot be read or evaluated; `offset` is where in the text."""

    def __init__(self, message: str, expression: str = "", offset: int = 0) -> None:
        super().__init__(message)
        self.expression = expression
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Template:
    """A string split into literal text and expressions."""

    parts: tuple[str | ParsedResult, ...]
    whole: ParsedResult | None  # set when the string is exactly one expression


def _compile(expression: str, offset: int) -> ParsedResult:
    if not expression.strip():
        raise ExpressionError("the expression ${{ }} is empty", expression, offset)
    try:
        return jmespath.compile(expression)
    except jmes_errors.ParseError as exc:
        if isinstance(exc, jmes_errors.LexerError):
            reason = exc.message
        elif isinstance(exc, jmes_errors.IncompleteExpressionError):
            reason = "it is incomplete"
        else:
            reason = exc.msg
        lead = len(expression) - len(expression.lstrip())
        at = min(max((exc.lex_position or 0) - lead, 0), len(expression.strip()))
        raise ExpressionError(
            f"invalid JMESPath {expression.strip()!r}: {reason} (at character {at})",
            expression,
            offset + lead + at,
        ) from None


def scan(text: str) -> Iterator[tuple[int, str]]:
    """Each `${{ expr }}` in `text` as (offset of expr in text, expr)."""
    start = text.find(OPEN)
    while start != -1:
        begin = start + len(OPEN)
        end = text.find(CLOSE, begin)
        if end == -1:
            raise ExpressionError(
                f"'{OPEN}' at character {start} has no closing '{CLOSE}'", text[begin:], start
            )
        yield begin, text[begin:end]
        start = text.find(OPEN, end + len(CLOSE))


@lru_cache(maxsize=_CACHE)
def template(text: str) -> Template:
    """Parse a string once; ExpressionError for a malformed or invalid expression."""
    parts: list[str | ParsedResult] = []
    cursor = 0
    for begin, expression in scan(text):
        literal = text[cursor : begin - len(OPEN)]
        if literal:
            parts.append(literal)
        parts.append(_compile(expression, begin))
        cursor = begin + len(expression) + len(CLOSE)
    if cursor < len(text):
        parts.append(text[cursor:])
    whole = parts[0] if len(parts) == 1 and isinstance(parts[0], ParsedResult) else None
    return Template(tuple(parts), whole)


def tidy(value: Any) -> Any:
    """`value` with each `${{expr}}` spelled `${{ expr }}`, so padding never changes a hash."""
    if isinstance(value, str):
        if OPEN not in value:
            return value
        out: list[str] = []
        cursor = 0
        for begin, expression in scan(value):
            out.append(value[cursor : begin - len(OPEN)])
            out.append(f"{OPEN} {expression.strip()} {CLOSE}")
            cursor = begin + len(expression) + len(CLOSE)
        out.append(value[cursor:])
        return "".join(out)
    if isinstance(value, dict):
        return {key: tidy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [tidy(item) for item in value]
    return value


def condition(text: str) -> str:
    """A `when` written as `${{ expr }}` or as a bare `expr`: the expression itself."""
    stripped = text.strip()
    if stripped.startswith(OPEN) and stripped.endswith(CLOSE):
        inner = stripped[len(OPEN) : -len(CLOSE)]
        if OPEN not in inner and CLOSE not in inner:
            return inner.strip()
    return stripped


@lru_cache(maxsize=_CACHE)
def compile_condition(text: str) -> ParsedResult:
    expression = condition(text)
    return _compile(expression, text.find(expression))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _search(parsed: ParsedResult, context: Context) -> Any:
    try:
        return parsed.search(context)
    except jmes_errors.JMESPathError as exc:
        raise ExpressionError(f"{parsed.expression.strip()!r}: {exc}", parsed.expression) from None


def _render(text: str, context: Context) -> Any:
    parsed = template(text)
    if parsed.whole is not None:
        return _search(parsed.whole, context)
    if len(parsed.parts) == 1 and isinstance(parsed.parts[0], str):
        return text
    return "".join(
        part if isinstance(part, str) else _as_text(_search(part, context)) for part in parsed.parts
    )


def evaluate_input(mapping: Any, context: Context) -> Any:
    """The input a step receives: `mapping` with every expression evaluated in `context`."""
    if isinstance(mapping, str):
        return _render(mapping, context) if OPEN in mapping else mapping
    if isinstance(mapping, dict):
        return {key: evaluate_input(value, context) for key, value in mapping.items()}
    if isinstance(mapping, list):
        return [evaluate_input(value, context) for value in mapping]
    return mapping


def truthy(value: Any) -> bool:
    """JMESPath truth: false, null, "", [] and {} are false; everything else (0 too) is true."""
    return not (value is None or value is False or value in ("", [], {}))


def evaluate_when(expr: str, context: Context) -> bool:
    """Whether a step's `when` holds in `context`."""
    return truthy(_search(compile_condition(expr), context))


def strings(value: Any, path: NodePath = ()) -> Iterator[tuple[NodePath, str]]:
    """Every string in a JSON value that holds an expression, with its path."""
    if isinstance(value, str):
        if OPEN in value:
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index))


# --- references -----------------------------------------------------------------------

Node = Mapping[str, Any]
# Node types whose every child is evaluated against the same value as the node itself.
_SAME_CONTEXT: Final = frozenset(
    {
        "function_expression",
        "comparator",
        "or_expression",
        "and_expression",
        "not_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
    }
)
# Node types whose first child is evaluated against the node's value, the rest per element.
_LEFT_CONTEXT: Final = frozenset(
    {"subexpression", "index_expression", "projection", "filter_projection", "flatten", "pipe"}
)


def _chain(node: Node) -> tuple[NodePath, bool] | None:
    """The static path at the head of `node` (fields and indexes), and whether it is all
    of `node`; None when the node does not start with a path."""
    kind = node["type"]
    children: Sequence[Node] = node.get("children", [])
    if kind == "field":
        return (node["value"],), True
    if kind == "current":
        return (), True
    if kind == "index_expression":
        head = _chain(children[0])
        if head is None:
            return None
        path, exact = head
        index = children[1]
        if exact and index["type"] == "index":
            return (*path, index["value"]), True
        return path, False
    if kind == "subexpression":
        head = _chain(children[0])
        if head is None:
            return None
        path, exact = head
        for child in children[1:]:
            if not exact:
                break
            step = _chain(child)
            if step is None:
                exact = False
                break
            path = (*path, *step[0])
            exact = step[1]
        return path, exact
    if kind in ("projection", "filter_projection", "flatten"):
        head = _chain(children[0])
        return None if head is None else (head[0], False)
    return None


def _walk(node: Node, found: list[NodePath]) -> None:
    """Collect root paths; only nodes evaluated against the root can read it (JMESPath
    has no way back to the root from inside a projection, filter or pipe)."""
    chain = _chain(node)
    if chain is not None:
        if chain[0]:
            found.append(chain[0])
        return
    kind = node["type"]
    children: Sequence[Node] = node.get("children", [])
    if kind in _SAME_CONTEXT:
        for child in children:
            _walk(child, found)
    elif kind in _LEFT_CONTEXT and children:
        _walk(children[0], found)


def references(parsed: ParsedResult) -> tuple[NodePath, ...]:
    """The root paths (`("steps", "fetch", "output", "body")`) an expression reads, each
    as far as it is static (up to the first projection, filter or slice)."""
    found: list[NodePath] = []
    _walk(parsed.parsed, found)
    return tuple(found)


def whole_path(parsed: ParsedResult) -> NodePath | None:
    """The path, when the expression is nothing but a path (so its value is what the
    schema at that path describes); None for anything computed."""
    chain = _chain(parsed.parsed)
    return chain[0] if chain is not None and chain[1] and chain[0] else None


def expression_references(expression: str) -> tuple[NodePath, ...]:
    """The root paths of one expression; ExpressionError if it is not valid JMESPath."""
    return references(_compile(expression, 0))


__all__ = [
    "CLOSE",
    "OPEN",
    "Context",
    "ExpressionError",
    "Template",
    "compile_condition",
    "condition",
    "evaluate_input",
    "evaluate_when",
    "expression_references",
    "references",
    "scan",
    "strings",
    "template",
    "tidy",
    "truthy",
    "whole_path",
]
