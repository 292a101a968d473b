"""The network capability: grant patterns, address checks and the checked fetch.

Every outside service is a real HTTP server this module starts on 127.0.0.1
(or ::1); names are resolved by an injected resolver, so no test depends on
DNS or /etc/hosts, and no traffic leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flowforge.runtime._addresses import (
    AddressSyntaxError,
    IPAddress,
    non_public_reason,
    parse_ip_literal,
)
from flowforge.runtime.network import (
    MAX_REQUEST_BODY_BYTES,
    NO_NETWORK,
    GrantError,
    HostPattern,
    NetworkPolicy,
)
from flowforge.runtime.values import HttpRequest, HttpResponse
from tests.local_http import QuietHandler, running

pytestmark = pytest.mark.timeout(30)

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
CAP = 64 * 1024


# --- servers -------------------------------------------------------------------------------


class _Handler(QuietHandler):
    """Routes: /echo (the request as JSON), /redirect?code=&to=, /hops/N, /big?n=, /stream?n=."""

    protocol_version = "HTTP/1.0"  # close-delimited bodies unless a length is sent

    def _any(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if url.path == "/echo":
            sni = getattr(self.server, "sni", None)
            self.reply(200, self._echo(body, sni))
        elif url.path == "/redirect":
            self._redirect(int(query.get("code", "302")), query["to"])
        elif url.path.startswith("/hops/"):
            left = int(url.path.removeprefix("/hops/"))
            self._redirect(302, f"/hops/{left - 1}" if left > 1 else "/echo")  # N redirects
        elif url.path == "/big":
            self.reply(200, b"x" * int(query["n"]))
        elif url.path == "/stream":
            # No Content-Length: the cap must stop the read, not the header.
            self.send_response(200)
            self.end_headers()
            for _ in range(int(query["n"]) // 4096):
                self.wfile.write(b"y" * 4096)
        else:
            self.reply(404, b"not found")

    def _echo(self, body: bytes, sni: object) -> bytes:
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
            "sni": sni,
        }
        return json.dumps(seen).encode()

    def _redirect(self, code: int, to: str) -> None:
        self.send_response(code)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sni: str | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hanging up mid-body is what the cap and timeout tests do.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


@dataclass(frozen=True)
class Served:
    host: str  # as spelled in a URL
    port: int

    def url(self, path: str = "/echo", scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"


def _serve(server: _Server) -> Iterator[Served]:
    with running(server):
        host, port = server.socket.getsockname()[:2]
        yield Served(f"[{host}]" if ":" in host else host, port)


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    yield from _serve(_Server(("127.0.0.1", 0), _Handler))


@pytest.fixture(scope="module")
def other() -> Iterator[Served]:
    """A second server on another port, for redirects across origins."""
    yield from _serve(_Server(("127.0.0.1", 0), _Handler))


@pytest.fixture(scope="module")
def server6() -> Iterator[Served]:
    try:
        instance = _Server6(("::1", 0), _Handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield from _serve(instance)


@pytest.fixture
def silent() -> Iterator[int]:
    """A port whose server accepts connections (the kernel backlog does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def drip() -> Iterator[int]:
    """A server that answers headers, then sends one body byte every 50 ms, for ever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                while not stop.wait(0.05):
                    try:
                        conn.sendall(b".")
                    except OSError:
                        return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[Served]:
    cert, key = tls_files
    instance = _Server(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember_sni(sock: Any, name: str | None, ctx: Any) -> None:
        instance.sni = name

    context.sni_callback = remember_sni
    instance.socket = context.wrap_socket(instance.socket, server_side=True)
    yield from _serve(instance)


# --- helpers -------------------------------------------------------------------------------


class Resolver:
    """A resolver for names the tests invent; it records every name it is asked."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[IPAddress]:
        self.asked.append(name)
        if name not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.table[name]]


def policy(*patterns: str, resolver: Resolver | None = None) -> NetworkPolicy:
    return NetworkPolicy.from_patterns(patterns, resolver=resolver or Resolver({}))


def fetch(
    net: NetworkPolicy,
    url: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timeout_ms: int | None = None,
    seconds: float = 10.0,
    **limits: int,
) -> HttpResponse | str:
    request = HttpRequest(method, url, headers or [], body, timeout_ms)
    limits.setdefault("max_response_bytes", CAP)
    return net.fetch(request, deadline=time.monotonic() + seconds, **limits)


def ok(result: HttpResponse | str) -> HttpResponse:
    assert isinstance(result, HttpResponse), result
    return result


def refused(result: HttpResponse | str) -> str:
    assert isinstance(result, str), result
    return result


def echoed(result: HttpResponse | str) -> dict[str, Any]:
    response = ok(result)
    assert response.status == 200
    seen: dict[str, Any] = json.loads(response.body)
    return seen


def header(seen: dict[str, Any], name: str) -> str | None:
    values = [v for k, v in seen["headers"] if k.lower() == name.lower()]
    assert len(values) <= 1
    return values[0] if values else None


# --- patterns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "addresses"),
    [
        ("example.com", "example.com", None, set()),
        ("Example.COM.", "example.com", None, set()),
        ("*.example.com", "*.example.com", None, set()),
        ("example.com:8443", "example.com", 8443, set()),
        ("127.0.0.1:8123", "127.0.0.1", 8123, {"127.0.0.1"}),
        ("10.1.2.3", "10.1.2.3", None, {"10.1.2.3"}),
        ("localhost:9000", "localhost", 9000, {"127.0.0.1", "::1"}),
        ("[::1]:8080", "::1", 8080, {"::1"}),
        ("[::1]", "::1", None, {"::1"}),
        ("[::ffff:127.0.0.1]:80", "127.0.0.1", 80, {"127.0.0.1"}),
        ("bücher.example", "xn--bcher-kva.example", None, set()),
    ],
)
def test_pattern_parses(text: str, host: str, port: int | None, addresses: set[str]) -> None:
    pattern = HostPattern.parse(text)
    assert pattern.host == host
    assert pattern.port == port
    assert pattern.addresses == {ipaddress.ip_address(a) for a in addresses}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("*", "a wildcard needs a domain after it"),
        ("*.", "a wildcard needs a domain after it"),
        ("*.127.0.0.1", "a wildcard needs a domain after it"),
        ("a.*.example.com", "'\\*' may only be the whole first label"),
        ("http://x", "a pattern has no scheme or path"),
        ("x/path", "a pattern has no scheme or path"),
        ("user@example.com", "a pattern has no user name"),
        ("a:b", "port 'b' is not a number"),
        ("a:", "the port after ':' is empty"),
        ("a:99999", "port 99999 is out of range \\(1-65535\\)"),
        ("a:0", "port 0 is out of range"),
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("::1", "write an IPv6 address in brackets"),
        ("[::1", "brackets hold an IPv6 address"),
        ("[example.com]:80", "brackets hold an IPv6 address"),
        ("0177.0.0.1", "write the address in dotted decimal, as 127.0.0.1"),
        ("2130706433", "write the address in dotted decimal, as 127.0.0.1"),
        ("1.2.3.4.5", "is not a valid IPv4 address"),
        ("exa mple.com", "is not a valid host name"),
        ("-bad.example.com", "is not a valid host name"),
    ],
)
def test_malformed_pattern_says_why_and_what_is_expected(text: str, why: str) -> None:
    with pytest.raises(GrantError, match=why) as raised:
        NetworkPolicy.from_patterns([text])
    message = str(raised.value)
    assert message.startswith(f"invalid host pattern {text!r}")
    assert "expected HOST, *.HOST, HOST:PORT or an IP address" in message
    assert isinstance(raised.value, ValueError)


def test_one_string_is_not_a_list_of_patterns() -> None:
    with pytest.raises(TypeError):
        NetworkPolicy.from_patterns("example.com")


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("a.example.com", True),
        ("a.b.c.example.com", True),
        ("example.com", False),
        ("badexample.com", False),
        ("example.com.evil.net", False),
        ("a.example.org", False),
    ],
)
def test_wildcard_matches_any_depth_of_subdomain_but_not_the_apex(name: str, matches: bool) -> None:
    assert HostPattern.parse("*.example.com").matches_name(name, 443) is matches


@pytest.mark.parametrize(
    ("pattern", "port", "allowed"),
    [
        ("example.com", 80, True),
        ("example.com", 443, True),
        ("example.com", 8080, False),
        ("example.com:8443", 8443, True),
        ("example.com:8443", 443, False),
        ("example.com:8443", 80, False),
    ],
)
def test_ports_default_to_80_and_443_only(pattern: str, port: int, allowed: bool) -> None:
    assert HostPattern.parse(pattern).matches_name("example.com", port) is allowed


def test_name_patterns_never_match_addresses_and_address_patterns_never_match_names() -> None:
    assert not HostPattern.parse("example.com").matches_address(LOOPBACK, 80)
    assert not HostPattern.parse("127.0.0.1").matches_name("127.0.0.1", 80)
    assert HostPattern.parse("127.0.0.1").matches_address(LOOPBACK, 443)
    assert not HostPattern.parse("127.0.0.1").matches_address(LOOPBACK, 8000)


# --- address literals and ranges -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spelled", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0000.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:7f00:1", "127.0.0.1"),
    ],
)
def test_every_spelling_of_an_address_is_read_as_that_address(spelled: str, address: str) -> None:
    assert parse_ip_literal(spelled) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "localhost", "a1", "1a.example", "x.0y"])
def test_names_are_not_addresses(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "host",
    ["1.2.3.4.5", "example.123", "256.0.0.1", "1.16777216", "09.0.0.1", "1..1", "fe80::1%eth0"],
)
def test_hosts_that_must_be_addresses_but_are_malformed_are_refused(host: str) -> None:
    with pytest.raises(AddressSyntaxError):
        parse_ip_literal(host)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("198.18.0.1", "reserved (benchmarking)"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::7f00:1", "reserved"),
        ("2001:db8::1", "reserved (documentation)"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_non_public_ranges_are_named(address: str, reason: str | None) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) == reason


# --- grants --------------------------------------------------------------------------------


def test_no_grant_no_network(server: Served) -> None:
    for net in (NetworkPolicy(), policy()):
        assert refused(fetch(net, server.url())) == NO_NETWORK
    assert NO_NETWORK == "no network granted; grant it with --allow-host HOST"


def test_granted_address_and_port_are_reached(server: Served) -> None:
    seen = echoed(fetch(policy(f"127.0.0.1:{server.port}"), server.url("/echo?q=1")))
    assert seen["method"] == "GET"
    assert seen["path"] == "/echo?q=1"
    assert header(seen, "Host") == f"127.0.0.1:{server.port}"
    assert header(seen, "Connection") == "close"


def test_other_port_of_a_granted_address_is_refused(server: Served, other: Served) -> None:
    message = refused(fetch(policy(f"127.0.0.1:{server.port}"), other.url()))
    assert message.startswith(f"http://127.0.0.1:{other.port} is 127.0.0.1, a loopback address")
    assert f"--allow-host 127.0.0.1:{other.port}" in message


def test_pattern_without_port_allows_only_80_and_443(server: Served) -> None:
    message = refused(fetch(policy("127.0.0.1"), server.url()))
    assert f"--allow-host 127.0.0.1:{server.port}" in message


def test_public_address_needs_its_own_grant() -> None:
    message = refused(fetch(policy("example.com"), "http://8.8.8.8/"))
    assert message == "http://8.8.8.8:80 is not granted; grant it with --allow-host 8.8.8.8"


def test_name_not_granted_is_refused_before_resolving() -> None:
    resolver = Resolver({"api.other.test": ["8.8.8.8"]})
    message = refused(
        fetch(policy("*.example.test", resolver=resolver), "https://api.other.test/x")
    )
    assert message == (
        "https://api.other.test:443 is not granted; grant it with --allow-host api.other.test"
    )
    assert resolver.asked == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://127.0.0.1/x", "only http and https URLs are allowed, not 'ftp'"),
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
        ("/relative", "only http and https URLs are allowed, not 'none'"),
        ("http:///path", "the URL has no host"),
        ("http://127.0.0.1:99999/", "the URL's port is not valid"),
        ("http://127.0.0.1:0/", "the URL's port is not valid"),
        ("http://127.0.0.1\\@example.com/", "backslashes"),
        ("http://127.0.0.1/ x", "spaces"),
        ("http://127.0.0.1/\r\nX: y", "control characters"),
        ("http://example.123/", "is not a valid IPv4 address"),
        ("http://[fe80::1%25eth0]/", "IPv6 zone identifiers are not supported"),
    ],
)
def test_malformed_or_other_scheme_urls_are_refused(url: str, why: str) -> None:
    assert why in refused(fetch(policy("127.0.0.1", "example.com"), url))


def test_urls_with_user_info_are_refused(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    for url in (
        f"http://a@127.0.0.1:{server.port}/echo",
        f"http://user:s3cr3t@127.0.0.1:{server.port}/echo",
        f"http://example.com@127.0.0.1:{server.port}/echo",
    ):
        message = refused(fetch(net, url))
        assert "URLs with user info (user@host) are refused" in message
        assert "s3cr3t" not in message


# --- SSRF: addresses reachable only when named literally -----------------------------------


SPELLINGS_OF_LOOPBACK = [
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "0x7f.1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
]


@pytest.mark.parametrize("spelled", SPELLINGS_OF_LOOPBACK)
def test_loopback_in_any_spelling_is_refused_without_its_grant(
    server: Served, spelled: str
) -> None:
    net = policy("*.example.com", "example.com", f"10.0.0.1:{server.port}")
    message = refused(fetch(net, f"http://{spelled}:{server.port}/echo"))
    assert "is 127.0.0.1, a loopback address" in message
    assert f"--allow-host 127.0.0.1:{server.port}" in message


@pytest.mark.parametrize("spelled", SPELLINGS_OF_LOOPBACK)
def test_loopback_in_any_spelling_is_reached_with_the_literal_grant(
    server: Served, spelled: str
) -> None:
    seen = echoed(fetch(policy(f"127.0.0.1:{server.port}"), f"http://{spelled}:{server.port}/echo"))
    # It is the same address, so the server sees it spelled the usual way.
    assert header(seen, "Host") == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    "url",
    [
        "http://0/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[::]/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_other_non_public_addresses_are_refused_without_a_literal_grant(url: str) -> None:
    message = refused(fetch(policy("*.example.com", "example.com"), url))
    assert "address; it is reachable only with a grant naming that address" in message


def test_ipv6_loopback_needs_its_literal_grant(server6: Served) -> None:
    message = refused(fetch(policy(f"127.0.0.1:{server6.port}"), server6.url()))
    assert "is ::1, a loopback address" in message
    assert f"--allow-host [::1]:{server6.port}" in message
    seen = echoed(fetch(policy(f"[::1]:{server6.port}"), server6.url()))
    assert header(seen, "Host") == f"[::1]:{server6.port}"


def test_localhost_is_loopback_without_asking_the_resolver(server: Served) -> None:
    resolver = Resolver({"localhost": ["8.8.8.8"]})  # a hostile resolver is never asked
    for pattern in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        net = policy(pattern, resolver=resolver)
        for host in ("localhost", "LOCALHOST", "localhost."):
            seen = echoed(fetch(net, f"http://{host}:{server.port}/echo"))
            assert header(seen, "Host") == f"localhost:{server.port}"
    assert resolver.asked == []
    message = refused(fetch(policy("example.com"), f"http://localhost:{server.port}/"))
    assert "is 127.0.0.1, a loopback address" in message


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["100.64.1.1"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["fd00::5", "192.168.7.7"],
    ],
)
def test_a_granted_name_never_reaches_a_non_public_address(
    server: Served, addresses: list[str]
) -> None:
    names = {"api.example.test": addresses, "example.test": addresses}
    resolver = Resolver(names)
    net = policy(
        f"*.example.test:{server.port}",
        f"example.test:{server.port}",
        f"127.0.0.1:{server.port}",  # granting the address does not open it to names
        resolver=resolver,
    )
    for name in names:
        message = refused(fetch(net, f"http://{name}:{server.port}/echo"))
        assert message.startswith(f"{name} resolves to ")
        assert "a host name never reaches non-public addresses" in message
    assert resolver.asked == list(names)  # once per request: the check and the connection agree


def test_a_name_that_does_not_resolve_says_so() -> None:
    message = refused(fetch(policy("*.example.test"), "http://nowhere.example.test/"))
    assert message == "could not resolve nowhere.example.test: Name or service not known"


def test_a_slow_resolver_is_bounded_by_the_deadline() -> None:
    def slow(name: str) -> list[IPAddress]:
        time.sleep(5)
        return [ipaddress.IPv4Address("8.8.8.8")]

    net = NetworkPolicy.from_patterns(["slow.example.test"], resolver=slow)
    started = time.monotonic()
    result = fetch(net, "http://slow.example.test/", seconds=0.2)
    assert refused(result) == "timed out resolving slow.example.test"
    assert time.monotonic() - started < 2


# --- TLS -----------------------------------------------------------------------------------


def test_https_connects_to_the_checked_address_with_the_name_as_sni(
    tls_server: Served, tls_files: tuple[Path, Path]
) -> None:
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    net = NetworkPolicy.from_patterns([f"localhost:{tls_server.port}"], tls=trusted)
    seen = echoed(fetch(net, f"https://localhost:{tls_server.port}/echo"))
    assert seen["sni"] == "localhost"
    assert header(seen, "Host") == f"localhost:{tls_server.port}"


def test_https_with_an_untrusted_certificate_fails_clearly(tls_server: Served) -> None:
    net = policy(f"localhost:{tls_server.port}")
    message = refused(fetch(net, f"https://localhost:{tls_server.port}/echo"))
    assert message.startswith("TLS certificate verification failed")


# --- redirects -----------------------------------------------------------------------------


def redirect(served: Served, code: int, to: str) -> str:
    return served.url(f"/redirect?code={code}&to={to}")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_to_granted_targets_are_followed(server: Served, code: int) -> None:
    seen = echoed(fetch(policy(f"127.0.0.1:{server.port}"), redirect(server, code, "/echo")))
    assert seen["path"] == "/echo"


@pytest.mark.parametrize(
    ("code", "method", "then"),
    [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (303, "PUT", "GET"),
        (301, "PUT", "PUT"),
        (302, "DELETE", "DELETE"),
        (307, "POST", "POST"),
        (308, "POST", "POST"),
        (308, "PUT", "PUT"),
    ],
)
def test_redirect_method_rules(server: Served, code: int, method: str, then: str) -> None:
    headers = [("Content-Type", "text/plain"), ("X-Keep", "1")]
    result = fetch(
        policy(f"127.0.0.1:{server.port}"),
        redirect(server, code, "/echo"),
        method=method,
        headers=headers,
        body=b"payload",
    )
    seen = echoed(result)
    assert seen["method"] == then
    assert header(seen, "X-Keep") == "1"
    if then == "GET":
        assert seen["body"] == ""
        assert header(seen, "Content-Type") is None
        assert header(seen, "Content-Length") is None
    else:
        assert seen["body"] == "payload"
        assert header(seen, "Content-Type") == "text/plain"


def test_redirect_to_an_ungranted_port_is_refused_naming_the_target(
    server: Served, other: Served
) -> None:
    result = fetch(policy(f"127.0.0.1:{server.port}"), redirect(server, 302, other.url()))
    message = refused(result)
    assert message.startswith(f"redirect from http://127.0.0.1:{server.port} refused: ")
    assert f"http://127.0.0.1:{other.port} is 127.0.0.1, a loopback address" in message


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("http://2130706433:{other}/echo", "is 127.0.0.1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("ftp://127.0.0.1:{server}/", "only http and https URLs are allowed"),
        ("http://u:pw@127.0.0.1:{server}/echo", "URLs with user info"),
        ("http://evil.example.test/", "is not granted"),
    ],
)
def test_every_hop_is_checked_again(server: Served, other: Served, to: str, why: str) -> None:
    target = to.format(server=server.port, other=other.port)
    net = policy(f"127.0.0.1:{server.port}")
    message = refused(fetch(net, redirect(server, 307, target)))
    assert message.startswith("redirect from ")
    assert why in message
    assert "pw" not in message


def test_redirect_to_another_granted_origin_drops_credentials(
    server: Served, other: Served
) -> None:
    net = policy(f"127.0.0.1:{server.port}", f"127.0.0.1:{other.port}")
    headers = [("Authorization", "Bearer s3cr3t"), ("Cookie", "a=b"), ("X-Other", "kept")]
    seen = echoed(fetch(net, redirect(server, 302, other.url()), headers=headers))
    assert header(seen, "Authorization") is None
    assert header(seen, "Cookie") is None
    assert header(seen, "X-Other") == "kept"
    same = echoed(fetch(net, redirect(server, 302, "/echo"), headers=headers))
    assert header(same, "Authorization") == "Bearer s3cr3t"


def test_redirects_are_limited(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    assert echoed(fetch(net, server.url("/hops/2"), max_redirects=3))["path"] == "/echo"
    assert echoed(fetch(net, server.url("/hops/2"), max_redirects=2))["path"] == "/echo"
    too_many = refused(fetch(net, server.url("/hops/2"), max_redirects=1))
    assert too_many == "too many redirects (more than 1)"
    assert refused(fetch(net, server.url("/hops/50"))) == "too many redirects (more than 5)"


def test_a_redirect_without_location_is_returned_as_it_is(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    response = ok(fetch(net, server.url("/missing")))
    assert response.status == 404
    assert response.body == b"not found"


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["big", "stream"])
def test_response_over_the_cap_is_an_error(server: Served, route: str) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    huge = 8 * 1024 * 1024
    message = refused(fetch(net, server.url(f"/{route}?n={huge}"), max_response_bytes=CAP))
    assert message == f"response body is larger than the limit of {CAP} bytes"


@pytest.mark.parametrize("route", ["big", "stream"])
def test_response_at_the_cap_is_whole(server: Served, route: str) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    response = ok(fetch(net, server.url(f"/{route}?n={CAP}"), max_response_bytes=CAP))
    assert len(response.body) == CAP


def test_head_of_a_huge_resource_is_not_refused(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    response = ok(fetch(net, server.url("/big?n=8000000"), method="HEAD"))
    assert response.status == 200
    assert response.body == b""


def test_request_body_over_the_cap_is_refused(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    over = b"z" * (MAX_REQUEST_BODY_BYTES + 1)
    message = refused(fetch(net, server.url(), method="POST", body=over))
    assert message == f"request body is larger than the limit of {MAX_REQUEST_BODY_BYTES} bytes"
    assert MAX_REQUEST_BODY_BYTES == 16 * 1024 * 1024
    seen = echoed(fetch(net, server.url(), method="POST", body=b"z" * 1000))
    assert header(seen, "Content-Length") == "1000"
    assert len(seen["body"]) == 1000


# --- time ----------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_server_that_never_answers_is_bounded_by_the_deadline(silent: int) -> None:
    net = policy(f"127.0.0.1:{silent}")
    started = time.monotonic()
    assert refused(fetch(net, f"http://127.0.0.1:{silent}/", seconds=0.3)) == "timed out"
    assert time.monotonic() - started < 3


@pytest.mark.timeout(10)
def test_a_server_that_never_answers_is_bounded_by_timeout_ms(silent: int) -> None:
    net = policy(f"127.0.0.1:{silent}")
    started = time.monotonic()
    result = fetch(net, f"http://127.0.0.1:{silent}/", timeout_ms=300, seconds=60)
    assert refused(result) == "timed out"
    assert time.monotonic() - started < 3


@pytest.mark.timeout(10)
def test_a_server_that_drips_is_bounded_by_the_deadline(drip: int) -> None:
    # Each byte arrives well within any per-read timeout; only a bound on the
    # whole call stops this.
    net = policy(f"127.0.0.1:{drip}")
    started = time.monotonic()
    result = fetch(net, f"http://127.0.0.1:{drip}/", seconds=0.5, max_response_bytes=1 << 20)
    assert refused(result) == "timed out"
    assert time.monotonic() - started < 3


def test_a_deadline_already_past_sends_nothing(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    assert refused(fetch(net, server.url(), seconds=-1)) == "timed out"


def test_a_closed_port_fails_clearly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = refused(fetch(policy(f"127.0.0.1:{port}"), f"http://127.0.0.1:{port}/"))
    assert message == f"could not connect to 127.0.0.1:{port}: Connection refused"


# --- headers and methods -------------------------------------------------------------------


def test_guest_headers_are_sent(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    headers = [("X-Api-Key", "k"), ("Accept", "application/json"), ("User-Agent", "conn/1")]
    seen = echoed(fetch(net, server.url(), headers=headers))
    assert header(seen, "X-Api-Key") == "k"
    assert header(seen, "Accept") == "application/json"
    assert header(seen, "User-Agent") == "conn/1"


@pytest.mark.parametrize(
    "name",
    ["Host", "host", "Content-Length", "Transfer-Encoding", "CONNECTION", "Upgrade", "Expect"],
)
def test_the_host_owns_framing_headers(server: Served, name: str) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    message = refused(fetch(net, server.url(), headers=[(name, "evil.example")]))
    assert message == f"header {name!r} is set by the host; remove it from the request"


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("X-A", "1\r\nHost: evil", "the value of header 'X-A' contains CR, LF or NUL"),
        ("X-A", "1\nX-B: 2", "the value of header 'X-A' contains CR, LF or NUL"),
        ("X-A", "1\r", "the value of header 'X-A' contains CR, LF or NUL"),
        ("X-A\r\nX-B", "1", "invalid header name 'X-A\\r\\nX-B'"),
        ("X A", "1", "invalid header name 'X A'"),
        ("", "1", "invalid header name ''"),
    ],
)
def test_header_injection_is_refused(server: Served, name: str, value: str, why: str) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    assert refused(fetch(net, server.url(), headers=[(name, value)])) == why


@pytest.mark.parametrize(
    ("method", "why"),
    [
        ("GET /x HTTP/1.1\r\n", "invalid HTTP method"),
        ("", "invalid HTTP method"),
        ("CONNECT", "the CONNECT method is not supported"),
    ],
)
def test_bad_methods_are_refused(server: Served, method: str, why: str) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    assert why in refused(fetch(net, server.url(), method=method))


def test_head_and_delete_work(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    head = ok(fetch(net, server.url(), method="HEAD"))
    assert head.status == 200
    assert head.body == b""
    assert echoed(fetch(net, server.url(), method="DELETE"))["method"] == "DELETE"


def test_refusals_never_echo_header_values_or_query_strings(server: Served) -> None:
    secret = "s3cr3t-token"
    net = policy("example.com")
    url = f"http://127.0.0.1:{server.port}/echo?key={secret}"
    message = refused(fetch(net, url, headers=[("Authorization", secret)]))
    assert secret not in message
    message = refused(fetch(net, url, headers=[("Host", secret)]))
    assert secret not in message


def test_a_policy_is_shared_safely_between_threads(server: Served) -> None:
    net = policy(f"127.0.0.1:{server.port}")
    results: list[HttpResponse | str] = []

    def one(index: int) -> None:
        results.append(fetch(net, server.url(f"/echo?i={index}")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(echoed(r)["path"] for r in results) == sorted(f"/echo?i={i}" for i in range(16))
