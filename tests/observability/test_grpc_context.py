"""A caller's W3C trace context in gRPC metadata continues in the server: a bare grpc.aio
server with `TraceContextInterceptor` and a tiny generic handler (unary and streaming)
that reports the trace it runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from flowforge.runtime.telemetry import current_ids
from flowforge.runtime.telemetry.grpc import TraceContextInterceptor

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


def _ids() -> bytes:
    trace_id, span_id = current_ids()
    return f"{trace_id} {span_id}".encode()


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return _ids()


async def _stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    for _ in range(2):
        yield _ids()


def _identity(value: bytes) -> bytes:
    return value


HANDLERS = grpc.method_handlers_generic_handler(
    "test.Echo",
    {
        "Ids": grpc.unary_unary_rpc_method_handler(_unary, _identity, _identity),
        "IdStream": grpc.unary_stream_rpc_method_handler(_stream, _identity, _identity),
    },
)


@asynccontextmanager
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[TraceContextInterceptor()])
    server.add_generic_rpc_handlers((HANDLERS,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
            yield opened
    finally:
        await server.stop(None)


async def _call(ch: grpc.aio.Channel, method: str, metadata: Any) -> list[bytes]:
    if method == "Ids":
        unary = ch.unary_unary("/test.Echo/Ids", _identity, _identity)
        return [await unary(b"", metadata=metadata)]
    stream = ch.unary_stream("/test.Echo/IdStream", _identity, _identity)
    return [item async for item in stream(b"", metadata=metadata)]


async def test_the_callers_trace_continues_in_a_server_span(spans: InMemorySpanExporter) -> None:
    async with channel() as ch:
        for method in ("Ids", "IdStream"):
            replies = await _call(ch, method, (("traceparent", TRACEPARENT),))
            for reply in replies:
                trace_id, span_id = reply.decode().split()
                assert trace_id == TRACE
                assert span_id != PARENT  # the server's own span, a child of the caller's
    server_spans = spans.get_finished_spans()
    assert [s.name for s in server_spans] == ["test.Echo/Ids", "test.Echo/IdStream"]
    for span in server_spans:
        assert span.kind is SpanKind.SERVER
        assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
        assert span.parent.is_remote
        assert span.attributes is not None and span.attributes["rpc.service"] == "test.Echo"


async def test_without_a_traceparent_the_server_span_starts_a_trace(
    spans: InMemorySpanExporter,
) -> None:
    async with channel() as ch:
        (reply,) = await _call(ch, "Ids", None)
    trace_id, _ = reply.decode().split()
    (span,) = spans.get_finished_spans()
    assert span.parent is None
    assert span.context is not None and f"{span.context.trace_id:032x}" == trace_id


async def test_with_tracing_off_the_handler_runs_untouched() -> None:
    async with channel() as ch:
        (reply,) = await _call(ch, "Ids", (("traceparent", TRACEPARENT),))
    assert reply == b"None None"
