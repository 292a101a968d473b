"""A local mock HTTP server that serves an example's recorded exchanges, with injected faults.

The conformance harness hands the sandbox an `Upstream` (see `network.py`) that forwards
each granted request over a real socket to this server on 127.0.0.1, carrying the
connector's absolute URL as the request target (as a client talks to a proxy). So the
connector's requests cross a real connection, and latency, timeouts and connection resets
are real, while nothing ever leaves the machine. Each run has its own `Scenario`, named in
a header the upstream adds (and the server removes), so runs can share one server at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import random
import socket
import ssl
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from flowforge.runtime._http_exchange import Exchange, ExchangeError, perform
from flowforge.runtime.manifest import HttpExchange
from flowforge.runtime.network import Upstream
from flowforge.runtime.values import Headers, HttpRequest, HttpResponse

Fault = Literal["http-500", "http-503", "http-429", "timeout", "reset"]
FAULTS: Final[tuple[Fault, ...]] = get_args(Fault)
UNMATCHED_STATUS: Final = 599
RETRY_AFTER_S: Final = 2

_LOOPBACK: Final = ipaddress.IPv4Address("127.0.0.1")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SHOWN_BODY: Final = 200
SCENARIO_HEADER: Final = "X-Flowforge-Mock-Scenario"


@dataclass(frozen=True, slots=True)
class Latency:
    """Delay added to every mock response: `fixed_ms` plus a uniform draw in [0, jitter_ms]."""

    fixed_ms: float
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.fixed_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency and jitter must not be negative")

    def draw_s(self, rng: random.Random) -> float:
        return (self.fixed_ms + rng.uniform(0.0, self.jitter_ms)) / 1000


def normal_url(url: str) -> str:
    """A URL compared as a server sees it: lower-case scheme and host, no default port,
    `/` for an empty path, no fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return url
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path or '/'}{query}"


def _shown(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= _SHOWN_BODY else text[:_SHOWN_BODY] + "..."


def _header(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers if k.lower() == wanted), None)


def _body_mismatch(exchange: HttpExchange, body: bytes) -> str | None:
    recorded = exchange.request
    if recorded.body is not None and body != recorded.body.encode("utf-8"):
        return f"its body {_shown(body)!r} is not the recorded body {recorded.body!r}"
    if recorded.json_body is not None:
        try:
            sent: Any = json.loads(body)
        except ValueError:
            return f"its body {_shown(body)!r} is not JSON (the recorded request has json)"
        if sent != recorded.json_body:
            expected = json.dumps(recorded.json_body, ensure_ascii=False)
            return f"its JSON body {_shown(body)} is not the recorded json {expected}"
    return None


def _mismatch(exchange: HttpExchange, headers: Headers, body: bytes) -> str | None:
    """Why a request with the exchange's method and URL still does not match it."""
    for name, value in exchange.request.headers.items():
        sent = _header(headers, name)
        if sent is None:
            return f"it lacks the recorded header {name!r}"
        if sent != value:
            # Values are not shown: recorded headers often carry (test) credentials.
            return f"its header {name!r} has a different value from the recorded one"
    return _body_mismatch(exchange, body)


def match(
    exchanges: Sequence[HttpExchange],
    served: Sequence[int],
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
) -> int | str:
    """The index of the exchange that answers this request, or a message saying why none does.

    Of several matching exchanges the first not yet served answers, so an example can
    record the same request twice with different responses (polling); once all are
    served, the last one keeps answering.
    """
    target = normal_url(url)
    candidates = [
        i
        for i, exchange in enumerate(exchanges)
        if exchange.request.method.upper() == method.upper()
        and normal_url(exchange.request.url) == target
    ]
    reasons = {i: _mismatch(exchanges[i], headers, body) for i in candidates}
    matching = [i for i in candidates if reasons[i] is None]
    if matching:
        return next((i for i in matching if i not in served), matching[-1])
    message = f"the connector sent {method} {url} which no recorded exchange matches"
    if candidates:
        return f"{message}: {method} {url} is recorded, but {reasons[candidates[0]]}"
    recorded = ", ".join(f"{e.request.method.upper()} {e.request.url}" for e in exchanges)
    return f"{message}; recorded: {recorded or 'none (the example has no [[examples.http]])'}"


@dataclass
class Scenario:
    """What the mock serves during one run, and what it saw."""

    exchanges: Sequence[HttpExchange]
    latency: Latency | None = None
    fault: Fault | None = None
    hold_s: float = 30.0  # how long a `timeout` fault keeps a request unanswered at most
    seed: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    served: list[int] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    forwarded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def route(self, method: str, url: str, headers: Headers, body: bytes) -> int | str:
        with self._lock:
            found = match(self.exchanges, self.served, method, url, headers, body)
            if isinstance(found, int):
                self.served.append(found)
            else:
                self.unmatched.append(found)
            return found

    def delay_s(self) -> float:
        with self._lock:
            return self.latency.draw_s(self._rng) if self.latency else 0.0


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: Headers
    body: bytes


def _json_reply(status: int, document: Any, headers: Headers | None = None) -> _Reply:
    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    return _Reply(status, [("Content-Type", "application/json"), *(headers or [])], body)


def _recorded_reply(exchange: HttpExchange) -> _Reply:
    response = exchange.response
    headers = list(response.headers.items())
    if response.json_body is not None:
        body = json.dumps(response.json_body, ensure_ascii=False).encode("utf-8")
        if _header(headers, "content-type") is None:
            headers.append(("Content-Type", "application/json"))
    else:
        body = (response.body or "").encode("utf-8")
    return _Reply(response.status, headers, body)


def _fault_reply(fault: Fault) -> _Reply:
    if fault == "http-429":
        return _json_reply(
            429, {"error": "injected fault: http-429"}, [("Retry-After", str(RETRY_AFTER_S))]
        )
    status = 500 if fault == "http-500" else 503
    return _json_reply(status, {"error": f"injected fault: {fault}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Fault runs connect side by side; socketserver's default backlog of 5 let a busy
    # machine drop a connection, which the connector rightly reported as unavailable.
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scenarios: dict[str, Scenario] = {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        scenario = self.server.scenarios.get(self.headers.get(SCENARIO_HEADER) or "")
        if scenario is None:
            self._send(_json_reply(503, {"error": "no run of the harness is waiting for this"}))
            return
        wanted = SCENARIO_HEADER.lower()
        headers: Headers = [(k, v) for k, v in self.headers.items() if k.lower() != wanted]
        found = scenario.route(self.command, self.path, headers, body)
        if scenario.released.wait(scenario.delay_s()):
            return  # the run is over; nobody is waiting for this answer
        if scenario.fault == "timeout":
            scenario.released.wait(scenario.hold_s)
            return
        if scenario.fault == "reset":
            self._reset()
            return
        if scenario.fault is not None:
            self._send(_fault_reply(scenario.fault))
        elif isinstance(found, str):
            self._send(_json_reply(UNMATCHED_STATUS, {"error": found}))
        else:
            self._send(_recorded_reply(scenario.exchanges[found]))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN. The
        # buffered reader holds a reference to the socket, so it is closed first.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the harness reports what matters; request lines would only be noise


class MockServer:
    """The mock server on 127.0.0.1 (a free port), and an `Upstream` per run that reaches it."""

    def __init__(self) -> None:
        self._server = _Server()
        self._ids = itertools.count(1)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flowforge-mock-http", daemon=True
        )
        self._thread.start()
        # Never used (the mock speaks plain HTTP even for https URLs), but `perform` takes one.
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @contextlib.contextmanager
    def serving(self, scenario: Scenario) -> Iterator[Upstream]:
        """Serve `scenario` for the block, through the upstream it yields; requests still
        held when the block ends are let go."""
        key = str(next(self._ids))
        self._server.scenarios[key] = scenario

        def upstream(
            request: HttpRequest, end: float, max_response_bytes: int
        ) -> HttpResponse | str:
            scenario.forwarded += 1  # one run uses its upstream from one thread at a time
            return self._forward(key, request, end, max_response_bytes)

        try:
            yield upstream
        finally:
            del self._server.scenarios[key]
            scenario.released.set()

    def _forward(
        self, key: str, request: HttpRequest, end: float, max_response_bytes: int
    ) -> HttpResponse | str:
        """Send one granted request to the mock; the response, or why there is none."""
        exchange = Exchange(
            method=request.method,
            https=False,
            server_name="127.0.0.1",
            host_header=urlsplit(request.url).netloc,
            target=request.url,
            headers=[*request.headers, (SCENARIO_HEADER, key)],
            body=request.body,
        )
        try:
            return perform(
                exchange,
                [_LOOPBACK],
                self.port,
                end=end,
                max_response_bytes=max_response_bytes,
                tls=self._tls,
            )
        except ExchangeError as error:
            return str(error)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MockServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
