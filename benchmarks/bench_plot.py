"""The benchmark's plot: latency against batch size per model and provider, and parameters and MACs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from nin_edge.models.plotting import pyplot, save_png

if TYPE_CHECKING:
    from .bench import BenchReport


def plot_report(report: BenchReport, path: Path) -> None:
    """Latency against batch size per model and provider, and a parameter / MAC bar chart, in one PNG."""
    plt = pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report.results:
        if r.p50_ms is not None:
            series.setdefault(f"{r.model} {r.backend}/{r.provider} {r.precision}", []).append((r.batch_size, r.p50_ms))
    for label, points in series.items():
        points.sort()
        ax1.plot([b for b, _ in points], [ms for _, ms in points], "o-", label=label)
    ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="p50 latency (ms)", title="latency")
    ax1.legend(fontsize=7)
    models: dict[str, tuple[int, int]] = {}
    for r in report.results:
        if r.params and r.macs:
            models[r.model] = (r.params, r.macs)
    names = list(models)
    xs = np.arange(len(names))
    ax2.bar(xs - 0.2, [models[n][0] / 1e6 for n in names], 0.4, label="parameters (M)")
    ax2.bar(xs + 0.2, [models[n][1] / 1e9 for n in names], 0.4, label="GMACs per image")
    ax2.set(xticks=xs, yscale="log", title="size and compute")
    ax2.set_xticklabels(names)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
