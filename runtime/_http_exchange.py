"""One HTTP/1.1 request and response over a connection to an already checked address.

The caller (`network.py`) has decided which addresses may be reached; this
module connects to exactly those (never resolving a name again, so there is no
window for DNS rebinding between the check and the connection), speaks TLS with
the name as SNI, and bounds the whole exchange by one wall-clock end time and
the response by a byte cap.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from flowforge.runtime._addresses import IPAddress
from flowforge.runtime.values import Headers, HttpResponse

_CHUNK = 64 * 1024


class ExchangeError(Exception):
    """The exchange failed; the message is safe to hand to the guest."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """What to send, already validated; `server_name` is the TLS name and `host_header` the Host."""

    method: str
    https: bool
    server_name: str
    host_header: str
    target: str
    headers: Headers
    body: bytes


def _remaining(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise ExchangeError("timed out")
    return left


def _connect(addresses: Sequence[IPAddress], port: int, end: float) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers, before `end`."""
    failures: list[str] = []
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(end))
            sock.connect((str(address), port))
        except TimeoutError:
            sock.close()
            raise ExchangeError(f"timed out connecting to {_endpoint(address, port)}") from None
        except OSError as error:
            sock.close()
            failures.append(f"{_endpoint(address, port)}: {error.strerror or error}")
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise ExchangeError("could not connect to " + "; ".join(failures))


def _endpoint(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


class _Watchdog:
    """Shuts the socket down at `end`, so no server (slow-drip or silent) outlives the deadline.

    Per-operation socket timeouts alone would let a server that sends one byte
    just before each timeout stretch the call without bound.
    """

    def __init__(self, sock: socket.socket, end: float) -> None:
        self.sock = sock  # replaced by the TLS socket once it wraps this one
        self.fired = threading.Event()
        self._timer = threading.Timer(max(0.0, end - time.monotonic()), self._stop)
        self._timer.daemon = True

    def _stop(self) -> None:
        self.fired.set()
        # The plain socket's shutdown, also for an SSLSocket: only the file
        # descriptor is touched, never the TLS state another thread is using.
        # A socket already closed has no descriptor and raises OSError.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _read_capped(response: http.client.HTTPResponse, cap: int) -> bytes:
    # `length` is the body still to come as http.client framed it: zero for
    # HEAD, 204 and 304 whatever Content-Length says, None when unknown.
    if response.length is not None and response.length > cap:
        raise ExchangeError(f"response body is larger than the limit of {cap} bytes")
    body = bytearray()
    while len(body) <= cap:
        chunk = response.read(min(_CHUNK, cap + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
    raise ExchangeError(f"response body is larger than the limit of {cap} bytes")


def _send(conn: http.client.HTTPConnection, exchange: Exchange) -> None:
    conn.putrequest(exchange.method, exchange.target, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", exchange.host_header)
    for name, value in exchange.headers:
        conn.putheader(name, value)
    if exchange.body or exchange.method in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(len(exchange.body)))
    # One request per connection: nothing is pooled across steps or grants.
    conn.putheader("Connection", "close")
    conn.endheaders(exchange.body or None)


def perform(
    exchange: Exchange,
    addresses: Sequence[IPAddress],
    port: int,
    *,
    end: float,
    max_response_bytes: int,
    tls: ssl.SSLContext,
    skip_body_for: frozenset[int] = frozenset(),
) -> HttpResponse:
    """Send `exchange` to the first reachable address in `addresses`; raises ExchangeError.

    The body of a response whose status is in `skip_body_for` and that has a
    Location (a redirect the caller will follow) is not read.
    """
    sock = _connect(addresses, port, end)
    conn = http.client.HTTPConnection(exchange.server_name, port)
    try:
        with _Watchdog(sock, end) as watchdog:
            try:
                if exchange.https:
                    sock = tls.wrap_socket(
                        sock, server_hostname=exchange.server_name, do_handshake_on_connect=False
                    )
                    watchdog.sock = sock
                    sock.do_handshake()
                conn.sock = sock
                _send(conn, exchange)
                response = conn.getresponse()
                redirect = response.status in skip_body_for and response.getheader("Location")
                body = b"" if redirect else _read_capped(response, max_response_bytes)
            except (OSError, http.client.HTTPException) as error:
                if watchdog.fired.is_set():
                    raise ExchangeError("timed out") from None
                raise ExchangeError(_describe(error)) from None
            if watchdog.fired.is_set():
                # The shutdown can look like a clean end of a close-delimited body.
                raise ExchangeError("timed out")
        return HttpResponse(status=response.status, headers=response.getheaders(), body=body)
    finally:
        conn.close()
        sock.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without a response"
    if isinstance(error, http.client.IncompleteRead):
        return "the server closed the connection before the whole body arrived"
    if isinstance(error, http.client.HTTPException):
        return f"invalid HTTP response ({type(error).__name__}: {error})"
    return f"connection failed: {getattr(error, 'strerror', None) or error}"
