"""IP address literals and the ranges a connector may reach only by naming them.

Two jobs, both about not being fooled by how an address is spelled:
- `parse_ip_literal` reads every form the system resolver would accept as an
  address (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`),
  so such a host is checked as the address it is and never as a name.
- `non_public_reason` says why an address is not on the public internet
  (loopback, private, link-local, ...), looking through IPv4-mapped, 6to4 and
  NAT64 wrappings of an IPv4 address.
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressSyntaxError(ValueError):
    """A host that must be read as an IPv4 address (its last label is a number) but is not one."""


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[_Network, str], ...]:
    return tuple((ipaddress.ip_network(net), why) for net, why in pairs)


# An explicit table rather than `ipaddress.is_global`, whose answers changed
# between Python patch releases (and which calls multicast "global").
_IPV4_SPECIAL: Final = _networks(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved (documentation)"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("198.51.100.0/24", "reserved (documentation)"),
    ("203.0.113.0/24", "reserved (documentation)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_IPV6_SPECIAL: Final = _networks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "reserved (documentation)"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),
    ("ff00::/8", "multicast"),
)
_IPV6_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def canonical(address: IPAddress) -> IPAddress:
    """The address a socket would really reach: an IPv4-mapped IPv6 address is its IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """None for a public address; otherwise a word saying what kind of address it is."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return non_public_reason(inner)
        for network, why in _IPV6_SPECIAL:
            if address in network:
                return why
        if address not in _IPV6_GLOBAL_UNICAST:
            return "reserved"
    else:
        for network, why in _IPV4_SPECIAL:
            if address in network:
                return why
    return None


def _ipv4_part(text: str) -> int | None:
    """One dotted part as inet_aton reads it: 0x hex, leading-0 octal, else decimal."""
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
        if digits == "":
            return 0  # inet_aton and WHATWG both read a bare "0x" as zero
    elif len(text) > 1 and text.startswith("0"):
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    if digits == "" or not all(c in "0123456789abcdef"[:base] for c in digits.lower()):
        return None
    return int(digits, base)


def _ends_in_number(host: str) -> bool:
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if last == "":
        return False
    if last.isascii() and last.isdigit():
        return True
    hex_digits = last[2:]
    return last[:2].lower() == "0x" and all(c in "0123456789abcdef" for c in hex_digits.lower())


def _parse_ipv4(host: str) -> ipaddress.IPv4Address:
    parts = host.removesuffix(".").split(".")
    values = [_ipv4_part(part) for part in parts] if len(parts) <= 4 else [None]
    if any(value is None for value in values):
        raise AddressSyntaxError(f"{host!r} ends in a number but is not a valid IPv4 address")
    numbers = [value for value in values if value is not None]
    # The last part fills every byte the earlier ones left (inet_aton: a, a.b, a.b.c, a.b.c.d).
    *leading, last = numbers
    if any(n > 0xFF for n in leading) or last >= 1 << (8 * (5 - len(numbers))):
        raise AddressSyntaxError(f"{host!r} is out of range for an IPv4 address")
    value = last
    for index, n in enumerate(leading):
        value |= n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, or None if it is a name.

    `host` is a URL or pattern host with IPv6 brackets already removed. Raises
    AddressSyntaxError when the host must be an address but is malformed
    (`1.2.3.4.5`, `example.123`): the resolver might read it either way, so it
    is refused rather than guessed.
    """
    if ":" in host:
        if "%" in host:
            raise AddressSyntaxError(f"{host!r}: IPv6 zone identifiers are not supported")
        try:
            return canonical(ipaddress.IPv6Address(host))
        except ValueError as error:
            raise AddressSyntaxError(f"{host!r} is not a valid IPv6 address") from error
    if _ends_in_number(host):
        return _parse_ipv4(host)
    return None
