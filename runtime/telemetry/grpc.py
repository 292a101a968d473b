"""The gRPC server side of trace propagation: `TraceContextInterceptor` reads the W3C
`traceparent` (and `tracestate`) from a call's metadata and runs the handler inside a
server span that continues the client's trace, so a run started over the API belongs to
the caller's trace.

While tracing is off the interceptor hands the handler back untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from opentelemetry.trace import SpanKind

from .propagation import extract
from .setup import tracer

# A string: the stubs make RpcMethodHandler generic, the runtime class is not.
Continuation: TypeAlias = (
    "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]"
)
Behavior: TypeAlias = Callable[..., Any]


def _split(method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> (`pkg.Service`, `Method`)."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class TraceContextInterceptor(grpc.aio.ServerInterceptor):
    """Continue the caller's trace (W3C trace context in the metadata) in this server."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        found = tracer()
        if handler is None or found is None:
            return handler
        carrier = {
            key.lower(): value
            for key, value in (handler_call_details.invocation_metadata or ())
            if isinstance(value, str)
        }
        parent = extract(carrier)
        method: str = handler_call_details.method
        service, name = _split(method)
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

        def wrap(behavior: Behavior | None) -> Behavior | None:
            if behavior is None:
                return None
            if inspect.isasyncgenfunction(behavior):

                async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                    with found.start_as_current_span(
                        method.lstrip("/"), parent, SpanKind.SERVER, attributes
                    ):
                        async for item in behavior(request, context):
                            yield item

                return stream
            if inspect.iscoroutinefunction(behavior):

                async def unary(request: Any, context: Any) -> Any:
                    with found.start_as_current_span(
                        method.lstrip("/"), parent, SpanKind.SERVER, attributes
                    ):
                        return await behavior(request, context)

                return unary
            return behavior  # a synchronous handler runs on a thread: left as it is

        return handler._replace(  # type: ignore[attr-defined, no-any-return]
            unary_unary=wrap(handler.unary_unary),
            unary_stream=wrap(handler.unary_stream),
            stream_unary=wrap(handler.stream_unary),
            stream_stream=wrap(handler.stream_stream),
        )


__all__ = ["TraceContextInterceptor"]
