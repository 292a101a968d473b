"""Per-invocation resource limits: what one call of a connector may consume."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for one invocation; the defaults are the `connector run` contract's.

    `fuel` bounds the work done (roughly one unit per wasm instruction) independently of
    the wall clock, so a busy machine cannot let a guest run longer than it was allowed.
    """

    memory_bytes: int = 64 * MIB
    timeout_s: float = 10.0
    fuel: int = 20_000_000_000
    output_bytes: int = 1 * MIB
    log_bytes: int = 256 * 1024
    log_lines: int = 1_000
    http_response_bytes: int = 8 * MIB
    http_requests: int = 100

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "fuel",
            "output_bytes",
            "log_bytes",
            "log_lines",
            "http_response_bytes",
            "http_requests",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"limit {name} must be positive, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise ValueError(f"limit timeout_s must be positive, got {self.timeout_s}")
