"""The network capability: which hosts a step may reach, and the checked `fetch` itself.

A connector reaches the network only through the host's `fetch`; the host makes
the request after checking it against the step's grants (`--allow-host`
patterns). The checks are made on the address a name resolves to, and the
connection goes to exactly that checked address, so a name cannot be re-pointed
between the check and the connection. Loopback, private and other non-public
addresses are reachable only through a URL that spells the address (or
`localhost`) and a grant that names the same address.

Every refusal or failure comes back as a string for the guest's `err`; these
strings name hosts, ports and header names, never header values or bodies.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import SplitResult, urljoin, urlsplit

from flowforge.runtime._addresses import (
    AddressSyntaxError,
    IPAddress,
    canonical,
    non_public_reason,
    parse_ip_literal,
)
from flowforge.runtime._http_exchange import Exchange, ExchangeError, perform
from flowforge.runtime.values import Headers, HttpRequest, HttpResponse

__all__ = [
    "MAX_REQUEST_BODY_BYTES",
    "NO_NETWORK",
    "GrantError",
    "HostPattern",
    "NetworkPolicy",
    "Resolver",
    "Upstream",
    "system_resolver",
]

Resolver = Callable[[str], Sequence[IPAddress]]
"""Turns a host name into its addresses; injectable so tests need no DNS or /etc/hosts."""

Upstream = Callable[[HttpRequest, float, int], HttpResponse | str]
"""Where granted requests go instead of the internet: `(request, end, max_response_bytes)`.

Only the conformance harness sets one (through `Sandbox.run(network_upstream=...)`), to
serve recorded exchanges from a local mock server. It is called for each hop after the
URL has passed the grant check by name, with the hop's method, absolute URL, headers and
body; `end` is the time.monotonic() value the whole fetch must finish by. It returns the
response, or a string saying why there is none (handed to the guest as the fetch error).
"""

MAX_REQUEST_BODY_BYTES: Final = 16 * 1024 * 1024
NO_NETWORK: Final = "no network granted; grant it with --allow-host HOST"

_EXPECTED: Final = (
    "expected HOST, *.HOST, HOST:PORT or an IP address, "
    "e.g. example.com, *.example.com, example.com:8443, 127.0.0.1:8123, [::1]:8080"
)
# Without a port a pattern grants the two scheme defaults only (least privilege).
_DEFAULT_PORTS: Final = frozenset({80, 443})
_SCHEME_PORTS: Final = {"http": 80, "https": 443}
_LOCALHOST: Final[tuple[IPAddress, ...]] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Framing and connection headers belong to the host: letting the guest set
# them would allow request smuggling or a body that disagrees with its length.
_HOST_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
# Dropped when a redirect changes origin, as browsers do, so a credential
# meant for one host is not handed to another.
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
# Dropped when a redirect turns the request into a GET without a body.
_BODY_HEADERS: Final = frozenset(
    {"content-type", "content-encoding", "content-language", "content-location"}
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


class GrantError(ValueError):
    """A grant pattern that is malformed; the message says what form is expected."""


class _Refused(Exception):
    """Internal: the request is refused or failed; the message goes to the guest."""


def _normalize_name(host: str) -> str:
    """A DNS name in lower-case ASCII without a trailing dot; ValueError says why not."""
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None
    name = name.removesuffix(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{host!r} is not a valid host name")
    return name


def _parse_port(text: str | None) -> int | None:
    if text is None:
        return None
    if text == "":
        raise ValueError("the port after ':' is empty")
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return port


def _format_host(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One parsed `--allow-host` pattern.

    `host` is a name (`example.com`), a wildcard (`*.example.com`: any depth of
    subdomain, not the apex) or an address; `addresses` is non-empty exactly
    for an address pattern (`localhost` stands for 127.0.0.1 and ::1).
    `port` None means ports 80 and 443.
    """

    host: str
    port: int | None = None
    addresses: frozenset[IPAddress] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        """Parse one pattern; raises GrantError saying what is wrong and what is expected."""
        try:
            return cls._parse(text.strip())
        except ValueError as error:
            raise GrantError(f"invalid host pattern {text!r}: {error}; {_EXPECTED}") from None

    @classmethod
    def _parse(cls, text: str) -> HostPattern:
        if text == "":
            raise ValueError("it is empty")
        if "/" in text:
            raise ValueError("a pattern has no scheme or path")
        if "@" in text:
            raise ValueError("a pattern has no user name")
        port_text: str | None = None
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")) or ":" not in host:
                raise ValueError("brackets hold an IPv6 address, as in [::1]:8080")
            if rest:
                port_text = rest[1:]
        elif text.count(":") > 1:
            raise ValueError("write an IPv6 address in brackets, as in [::1]:8080")
        else:
            host, colon, after = text.partition(":")
            if colon:
                port_text = after
        port = _parse_port(port_text)
        host = host.lower()
        if host == "*" or host == "*.":
            raise ValueError("a wildcard needs a domain after it, as in *.example.com")
        if host.startswith("*."):
            suffix = host[2:]
            if "*" in suffix or parse_ip_literal(suffix) is not None:
                raise ValueError("a wildcard needs a domain after it, as in *.example.com")
            return cls("*." + _normalize_name(suffix), port)
        if "*" in host:
            raise ValueError("'*' may only be the whole first label, as in *.example.com")
        return cls._parse_host(host, port)

    @classmethod
    def _parse_host(cls, host: str, port: int | None) -> HostPattern:
        try:
            address = parse_ip_literal(host)
        except AddressSyntaxError as error:
            raise ValueError(str(error)) from None
        if address is not None:
            # A grant must be unambiguous to its reader: 010.0.0.1 is 8.0.0.1 to
            # the resolver, and 10.0.0.1 to most people.
            if ":" not in host and str(address) != host.removesuffix("."):
                raise ValueError(f"write the address in dotted decimal, as {address}")
            return cls(str(address), port, frozenset({address}))
        name = _normalize_name(host)
        if name == "localhost":
            return cls(name, port, frozenset(_LOCALHOST))
        return cls(name, port)

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    def allows_port(self, port: int) -> bool:
        return port in _DEFAULT_PORTS if self.port is None else port == self.port

    def matches_name(self, name: str, port: int) -> bool:
        """Whether a name (normalized, resolved through DNS) is granted on `port`."""
        if self.addresses or not self.allows_port(port):
            return False
        if self.wildcard:
            return name.endswith(self.host[1:])
        return name == self.host

    def matches_address(self, address: IPAddress, port: int) -> bool:
        """Whether an address spelled in a URL (or `localhost`) is granted on `port`."""
        return address in self.addresses and self.allows_port(port)

    def __str__(self) -> str:
        return _format_host(self.host, self.port)


def system_resolver(name: str) -> list[IPAddress]:
    """The system's addresses for `name`, in its order of preference, without duplicates."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
        try:
            address = canonical(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # Loading the system CA store costs milliseconds; do it once per process.
    return ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class _Target:
    """A checked URL: what to connect to and how to name it on the wire."""

    scheme: str
    host: str  # normalized name, or the address spelled canonically
    address: IPAddress | None  # set when the URL spelled an address
    port: int
    path: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{_format_host(self.host, self.port)}"

    @property
    def host_header(self) -> str:
        default = self.port == _SCHEME_PORTS[self.scheme]
        return _format_host(self.host, None if default else self.port)


def _shown(parts: SplitResult) -> str:
    """A URL reduced to scheme://host[:port] for messages: no user info, path or query."""
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    return f"{parts.scheme}://{_format_host(host, port)}"


def _parse_url(url: str) -> _Target:
    if any(c <= " " or c in "\x7f\\" for c in url):
        raise _Refused("the URL contains spaces, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEME_PORTS:
        raise _Refused(f"only http and https URLs are allowed, not {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise _Refused(
            f"{_shown(parts)}: URLs with user info (user@host) are refused; "
            "send credentials in a header"
        )
    hostname = parts.hostname
    if not hostname:
        raise _Refused("the URL has no host")
    try:
        explicit_port = parts.port
    except ValueError:
        raise _Refused(f"the URL's port is not valid ({parts.netloc})") from None
    port = _SCHEME_PORTS[scheme] if explicit_port is None else explicit_port
    if port == 0:
        raise _Refused("the URL's port is not valid (0)")
    try:
        address = parse_ip_literal(hostname)
        host = str(address) if address is not None else _normalize_name(hostname)
    except ValueError as error:  # AddressSyntaxError is a ValueError
        raise _Refused(str(error)) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, address, port, path)


def _suggest(host: str, port: int) -> str:
    return _format_host(host, None if port in _DEFAULT_PORTS else port)


def _check_request(request: HttpRequest, max_request_bytes: int) -> None:
    if not _TOKEN.match(request.method):
        raise _Refused(f"invalid HTTP method {request.method!r}")
    if request.method.upper() == "CONNECT":
        raise _Refused("the CONNECT method is not supported")
    for name, value in request.headers:
        if not _TOKEN.match(name):
            raise _Refused(f"invalid header name {name!r}")
        if name.lower() in _HOST_HEADERS:
            raise _Refused(f"header {name!r} is set by the host; remove it from the request")
        if any(c in value for c in "\r\n\0"):
            raise _Refused(f"the value of header {name!r} contains CR, LF or NUL")
    if len(request.body) > max_request_bytes:
        raise _Refused(f"request body is larger than the limit of {max_request_bytes} bytes")


class NetworkPolicy:
    """The hosts one step may reach, and the `fetch` that enforces them.

    Immutable and safe to share between concurrent calls; each `fetch` opens its
    own connection(s) and closes them before returning.
    """

    def __init__(
        self,
        patterns: Sequence[HostPattern] = (),
        *,
        resolver: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.patterns: tuple[HostPattern, ...] = tuple(patterns)
        self._resolver = resolver
        self._tls = tls
        self._upstream = upstream

    def with_upstream(self, upstream: Upstream) -> NetworkPolicy:
        """The same grants, with granted requests sent to `upstream` instead of the network.

        The grant check is unchanged (a host not granted is still refused); only name
        resolution, the address checks and the connection are replaced. For test harnesses.
        """
        return NetworkPolicy(
            self.patterns, resolver=self._resolver, tls=self._tls, upstream=upstream
        )

    @classmethod
    def from_patterns(
        cls,
        patterns: Sequence[str],
        *,
        resolver: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
    ) -> NetworkPolicy:
        """Parse `--allow-host` patterns; raises GrantError for the first malformed one."""
        if isinstance(patterns, str):
            raise TypeError("patterns is a sequence of strings, not one string")
        return cls([HostPattern.parse(p) for p in patterns], resolver=resolver, tls=tls)

    def fetch(
        self,
        request: HttpRequest,
        *,
        deadline: float,
        max_response_bytes: int,
        max_redirects: int = 5,
        max_request_bytes: int = MAX_REQUEST_BODY_BYTES,
    ) -> HttpResponse | str:
        """Make the request if granted; the response, or a string saying why not.

        `deadline` is a time.monotonic() value; it and the request's own
        timeout-ms both bound the whole call, redirects included. Redirects are
        followed by the host, each hop checked against the grants again.
        """
        end = deadline
        if request.timeout_ms is not None:
            end = min(end, time.monotonic() + request.timeout_ms / 1000)
        try:
            if not self.patterns:
                raise _Refused(NO_NETWORK)
            _check_request(request, max_request_bytes)
            return self._follow(request, end, max_response_bytes, max_redirects)
        except (_Refused, ExchangeError) as error:
            return str(error)

    def _follow(
        self, request: HttpRequest, end: float, max_response_bytes: int, max_redirects: int
    ) -> HttpResponse:
        method, url, headers, body = request.method, request.url, request.headers, request.body
        target = _parse_url(url)
        addresses = self._admit(target, end)
        hops = 0
        while True:
            if self._upstream is not None:
                answer = self._upstream(
                    HttpRequest(method, url, list(headers), body), end, max_response_bytes
                )
                if isinstance(answer, str):
                    raise _Refused(answer)
                response = answer
            else:
                exchange = Exchange(
                    method=method,
                    https=target.scheme == "https",
                    server_name=target.host,
                    host_header=target.host_header,
                    target=target.path,
                    headers=headers,
                    body=body,
                )
                response = perform(
                    exchange,
                    addresses,
                    target.port,
                    end=end,
                    max_response_bytes=max_response_bytes,
                    tls=self._tls or _default_tls(),
                    skip_body_for=_REDIRECTS,
                )
            location = _location(response)
            if response.status not in _REDIRECTS or location is None:
                return response
            if hops >= max_redirects:
                raise _Refused(f"too many redirects (more than {max_redirects})")
            hops += 1
            url = urljoin(url, location)
            try:
                next_target = _parse_url(url)
                addresses = self._admit(next_target, end)
            except _Refused as error:
                raise _Refused(f"redirect from {target.origin} refused: {error}") from None
            if (response.status == 303 and method != "HEAD") or (
                response.status in (301, 302) and method == "POST"
            ):
                method, body = "GET", b""
                headers = _headers_without(headers, _BODY_HEADERS)
            if next_target.origin != target.origin:
                headers = _headers_without(headers, _CREDENTIAL_HEADERS)
            target = next_target

    def _admit(self, target: _Target, end: float) -> list[IPAddress]:
        """The addresses `target` may be connected to, in order; raises _Refused if none.

        With an upstream set, only the grant check by name (or spelled address) is made:
        the upstream stands in for resolution and connection, so nothing is resolved.
        """
        if target.address is not None or target.host == "localhost":
            # Spelled as an address (or localhost, which never goes to DNS):
            # only an address grant reaches it, whatever kind of address it is.
            spelled = [target.address] if target.address is not None else list(_LOCALHOST)
            granted = [
                a for a in spelled if any(p.matches_address(a, target.port) for p in self.patterns)
            ]
            if granted:
                return granted
            reason = non_public_reason(spelled[0])
            hint = f"grant it with --allow-host {_suggest(target.host, target.port)}"
            if reason is None:
                raise _Refused(f"{target.origin} is not granted; {hint}")
            raise _Refused(
                f"{target.origin} is {spelled[0]}, a {reason} address; it is reachable only "
                f"with a grant naming that address: {hint}"
            )
        if not any(p.matches_name(target.host, target.port) for p in self.patterns):
            raise _Refused(
                f"{target.origin} is not granted; grant it with "
                f"--allow-host {_suggest(target.host, target.port)}"
            )
        if self._upstream is not None:
            return []
        resolved = self._resolve(target.host, end)
        public = [a for a in resolved if non_public_reason(a) is None]
        if public:
            return public
        if not resolved:
            raise _Refused(f"{target.host} has no address")
        raise _Refused(
            f"{target.host} resolves to {resolved[0]}, a {non_public_reason(resolved[0])} "
            "address; a host name never reaches non-public addresses (only a URL that "
            "spells the address, granted literally, does)"
        )

    def _resolve(self, name: str, end: float) -> list[IPAddress]:
        # getaddrinfo cannot be given a timeout; run it aside so a slow DNS
        # server cannot hold the call past its deadline.
        outcome: list[Sequence[IPAddress] | BaseException] = []

        def work() -> None:
            try:
                outcome.append(self._resolver(name))
            except BaseException as error:
                outcome.append(error)

        worker = threading.Thread(target=work, name=f"resolve {name}", daemon=True)
        worker.start()
        worker.join(max(0.0, end - time.monotonic()))
        if not outcome:
            raise _Refused(f"timed out resolving {name}")
        result = outcome[0]
        if isinstance(result, OSError):
            raise _Refused(f"could not resolve {name}: {result.strerror or result}")
        if isinstance(result, BaseException):
            raise result
        return [canonical(a) for a in result]


def _location(response: HttpResponse) -> str | None:
    for name, value in response.headers:
        if name.lower() == "location":
            return value
    return None


def _headers_without(headers: Headers, names: frozenset[str]) -> Headers:
    return [(k, v) for k, v in headers if k.lower() not in names]
