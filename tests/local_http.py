"""Local HTTP servers for tests: the only network a test may reach is one it starts here,
on a loopback address and a port the kernel picks."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

Server = TypeVar("Server", bound=ThreadingHTTPServer)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean and answers in one call."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Send `status`, `headers` (a name may repeat), a Content-Length and `body` (but
        not for HEAD, whose answer carries the length without the body)."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Serve `server` (already bound) on a thread until the block ends; then stop it, close
    its socket and wait for the thread, so no test leaks a listener into the next."""
    # A short poll interval: shutdown() waits for the loop to look up, once per interval.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[int]:
    """A threading HTTP server for `handler` on `host`, port 0; yields the port it got."""
    with running(ThreadingHTTPServer((host, 0), handler)) as server:
        yield server.server_address[1]
