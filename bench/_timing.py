"""The one way the benchmarks time a call: warm up, then the median of many runs."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def median_us(fn: Callable[[], object], rounds: int, warmup: int = 20) -> float:
    """Median wall time of `fn()` in microseconds over `rounds` runs, after `warmup` runs."""
    for _ in range(warmup):
        fn()
    gc.collect()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000
