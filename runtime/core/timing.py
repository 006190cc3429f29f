"""Timing loops and latency statistics, with an injectable clock so they can be tested exactly."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], int]


@dataclass(frozen=True)
class LatencyStats:
    """Latency figures in milliseconds over the measured runs (warm-up excluded)."""

    runs: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(durations_ns: list[int]) -> LatencyStats:
    """Statistics of per-run durations given in nanoseconds."""
    ms = sorted(d / 1e6 for d in durations_ns)
    mean = sum(ms) / len(ms)
    var = sum((v - mean) ** 2 for v in ms) / (len(ms) - 1) if len(ms) > 1 else 0.0
    return LatencyStats(
        runs=len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        mean_ms=mean,
        std_ms=math.sqrt(var),
        min_ms=ms[0],
        max_ms=ms[-1],
    )


def measure(
    fn: Callable[[], object],
    *,
    warmup: int,
    min_runs: int,
    min_seconds: float,
    max_runs: int | None = None,
    clock: Clock = time.perf_counter_ns,
) -> list[int]:
    """Run ``fn`` ``warmup`` times untimed, then time each run until both minimums are met.

    ``fn`` must return only when the work is done (GPU callers synchronise inside it).
    """
    for _ in range(warmup):
        fn()
    durations: list[int] = []
    budget = int(min_seconds * 1e9)
    spent = 0
    while len(durations) < min_runs or spent < budget:
        if max_runs is not None and len(durations) >= max_runs:
            break
        start = clock()
        fn()
        elapsed = clock() - start
        durations.append(elapsed)
        spent += elapsed
    return durations
