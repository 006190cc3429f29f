"""Benchmarks of NiN against AlexNet and VGG-11: ``run_bench(BenchConfig(...)) -> BenchReport``."""

from typing import TYPE_CHECKING

from nin_edge.runtime.core.lazy import lazy_exports

if TYPE_CHECKING:
    from nin_edge.export.timing import LatencyStats, measure, measure_interleaved, summarize

    from .bench import BenchConfig, BenchReport, Row, cached_export, default_cache_dir, run_bench
    from .bench_plot import plot_report


__all__ = [
    "BenchConfig",
    "BenchReport",
    "LatencyStats",
    "Row",
    "cached_export",
    "default_cache_dir",
    "measure",
    "measure_interleaved",
    "plot_report",
    "run_bench",
    "summarize",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "nin_edge.export.timing": ("LatencyStats", "measure", "measure_interleaved", "summarize"),
        ".bench": (
            "BenchConfig",
            "BenchReport",
            "Row",
            "cached_export",
            "default_cache_dir",
            "run_bench",
        ),
        ".bench_plot": ("plot_report",),
    },
)
