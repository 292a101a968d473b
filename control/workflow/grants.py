"""Whether what a workflow step grants stays within what its connector's manifest declares.

A granted host pattern must be covered by a declared one: `api.example.com` and
`*.eu.example.com` by `*.example.com`; `example.com:8443` only by a pattern naming port
8443; a pattern without a port (80 and 443) by one without a port.
"""

from __future__ import annotations

from flowforge.runtime.network import HostPattern

_DEFAULT_PORTS = (80, 443)


def _ports_covered(declared: HostPattern, granted: HostPattern) -> bool:
    if granted.port is None:
        return declared.port is None
    return declared.allows_port(granted.port)


def _hosts_covered(declared: HostPattern, granted: HostPattern) -> bool:
    if declared.addresses or granted.addresses:
        return bool(granted.addresses) and granted.addresses <= declared.addresses
    if declared.wildcard:
        suffix = declared.host[1:]  # ".example.com"
        return granted.host.endswith(suffix)
    return not granted.wildcard and granted.host == declared.host


def covers(declared: HostPattern, granted: HostPattern) -> bool:
    """Whether every host and port `granted` admits is admitted by `declared`."""
    return _hosts_covered(declared, granted) and _ports_covered(declared, granted)


def uncovered(granted: list[str], declared: list[str]) -> list[tuple[int, str]]:
    """The granted patterns (index, text) that no declared pattern covers."""
    parsed = [HostPattern.parse(text) for text in declared]
    return [
        (index, text)
        for index, text in enumerate(granted)
        if not any(covers(d, HostPattern.parse(text)) for d in parsed)
    ]


__all__ = ["covers", "uncovered"]
