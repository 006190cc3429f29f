"""``nin-bench --profile``: per-node time of each benchmarked model, joined with the node's MACs.

The same models, providers, precisions and batch sizes as the latency benchmark, each profiled by
onnxruntime (:func:`nin_edge.runtime.profiling.profile_nodes`); the report keeps the ``top`` slowest
nodes of each and says how much of the time they cover.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from nin_edge.models.plotting import pyplot, save_png
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.report import Report, format_table
from nin_edge.runtime.profiling import NodeProfileReport, profile_nodes

from .bench import BenchConfig, default_cache_dir, model_files


@dataclass(frozen=True)
class ProfileReport(Report):
    """The ``top`` slowest nodes of each profiled model x provider x precision x batch size."""

    top: int
    runs: int
    profiles: tuple[NodeProfileReport, ...]

    def rows(self) -> list[dict]:
        return [
            {"model": p.model, "provider": p.provider, "batch_size": p.batch_size, "total_ms": p.total_ms, **row}
            for p in self.profiles
            for row in p.rows()[: self.top]
        ]

    def to_table(self) -> str:
        parts = []
        for p in self.profiles:
            shown = p.results[: self.top]
            covered = sum(r.share for r in shown)
            macs = sum(r.macs or 0 for r in p.results)
            rate = 2 * macs / (p.total_ms * 1e6) if p.total_ms else 0.0
            parts.append(
                f"{p.model} on {p.provider}, batch {p.batch_size}: {p.total_ms:.3f} ms of node time per run, "
                f"{macs / 1e6:,.1f} M MACs ({rate:.1f} GFLOP/s overall); the {len(shown)} slowest of "
                f"{len(p.results)} nodes take {covered:.0%}\n" + format_table(p.rows()[: self.top])
            )
        return "\n\n".join(parts)


def run_profile(
    config: BenchConfig, *, top: int = 10, runs: int = 20, progress: Callable[[str], None] | None = None
) -> ProfileReport:
    """Profile every model x provider x precision x batch size of ``config`` with ``runs`` runs each."""
    if top <= 0 or runs <= 0:
        raise ConfigError(f"--top and --runs must be positive, got {top} and {runs}")
    config.validate()
    say = progress or (lambda _msg: None)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    profiles = []
    for provider in config.provider:
        for name, precision, path, _ in model_files(config, cache, say):
            for batch in config.batch_sizes:
                say(f"profiling {name} ({precision}) on {provider}, batch {batch}")
                report = profile_nodes(str(path), provider=provider, batch_size=batch, runs=runs, warmup=config.warmup)
                profiles.append(replace(report, model=f"{name} {precision}"))
    return ProfileReport(top=top, runs=runs, profiles=tuple(profiles))


def plot_profile(report: ProfileReport, path: Path) -> None:
    """One horizontal bar chart per profile: the slowest nodes' ms, labelled with op and GFLOP/s."""
    plt = pyplot()
    n = len(report.profiles)
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.35 * report.top * n + 1.2 * n), squeeze=False)
    for ax, p in zip(axes[:, 0], report.profiles, strict=True):
        shown = p.results[: report.top][::-1]
        ys = np.arange(len(shown))
        ax.barh(ys, [r.ms for r in shown])
        ax.set_yticks(ys)
        ax.set_yticklabels(
            [f"{r.op} {r.node[-28:]}" + (f" ({r.gflop_s:.0f} GFLOP/s)" if r.gflop_s else "") for r in shown],
            fontsize=7,
        )
        ax.set(xlabel="ms per run", title=f"{p.model} on {p.provider}, batch {p.batch_size}")
    fig.tight_layout()
    save_png(fig, path)
