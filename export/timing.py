"""The toolkit's one timing harness: timing loops and latency statistics.

Every figure nin-edge reports comes through here (``nin-bench``, the export's precision summary,
the overhead, INT8-layout and serving tools), with an injectable clock so the loops can be
tested exactly. Statistics are numpy's (linear-interpolated percentiles).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

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


def summarize_ms(values_ms: Iterable[float]) -> LatencyStats:
    """Statistics of per-run latencies given in milliseconds."""
    ms = np.asarray(list(values_ms), dtype=np.float64)
    if ms.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, [50, 90, 95, 99]))
    return LatencyStats(
        runs=int(ms.size),
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
    )


def summarize(durations_ns: Iterable[int]) -> LatencyStats:
    """Statistics of per-run durations given in nanoseconds."""
    return summarize_ms(d / 1e6 for d in durations_ns)


def measure(
    fn: Callable[[], object],
    *,
    warmup: int,
    min_runs: int,
    min_seconds: float = 0.0,
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


def measure_interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    runs: int,
    warmup: int = 1,
    pause: float = 0.0,
    clock: Clock = time.perf_counter_ns,
) -> dict[str, list[int]]:
    """Time several functions against each other: ``rounds`` rounds of ``runs`` runs of each.

    The order alternates from round to round and ``pause`` seconds separate the blocks, because
    on a small CPU whatever runs first or right after another runtime's spinning threads is slower.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[int]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].extend(measure(fns[name], warmup=0, min_runs=runs, max_runs=runs, clock=clock))
            if pause:
                time.sleep(pause)
    return times


def median_ms(clf, x: np.ndarray, runs: int = 15) -> float:
    """Median latency of ``clf.logits(x)`` after two warm-up calls (a quick figure, not a benchmark)."""
    return summarize(measure(lambda: clf.logits(x), warmup=2, min_runs=runs, max_runs=runs)).p50_ms
