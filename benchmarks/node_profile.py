"""``python -m nin_edge.benchmarks.node_profile MODEL``: where a model's time goes, node by node.

onnxruntime's own profiler records every node's kernel time and the provider that ran it; this
tool runs ``runs`` timed inferences after a warm-up, sums each node's time and prints the top
nodes with their share of the total. It answers "why is this slower than the hardware's peak".
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnxruntime as ort
from nin_edge.runtime.cli.common import format_option, one_line_errors, provider_option
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.core.report import Report, format_table
from nin_edge.runtime.providers import ALIASES, CPU


@dataclass(frozen=True)
class NodeTime:
    """One node's mean kernel time per inference."""

    node: str
    op: str
    provider: str
    ms: float
    share: float


@dataclass(frozen=True)
class NodeProfileReport(Report):
    """Per-node times of one model at one batch size, slowest first."""

    model: str
    provider: str
    batch_size: int
    runs: int
    total_ms: float
    results: tuple[NodeTime, ...]

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.results]

    def to_table(self) -> str:
        head = (
            f"{self.model} on {self.provider}, batch {self.batch_size}: "
            f"{self.total_ms:.3f} ms of node time per run ({self.runs} runs)"
        )
        return head + "\n" + format_table(self.rows())


def summarize_trace(events: list[dict], runs: int) -> list[NodeTime]:
    """Mean time per inference of each node in an onnxruntime profile trace, slowest first."""
    total: dict[str, float] = defaultdict(float)
    info: dict[str, tuple[str, str]] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        args = ev.get("args", {})
        node = ev["name"][: -len("_kernel_time")]
        total[node] += ev.get("dur", 0) / 1e3
        info[node] = (args.get("op_name", "?"), args.get("provider", "?"))
    grand = sum(total.values()) or 1.0
    rows = [NodeTime(node, *info[node], ms / runs, ms / grand) for node, ms in total.items()]
    return sorted(rows, key=lambda r: -r.ms)


def profile_nodes(
    model: str, *, provider: str = "cpu", batch_size: int = 1, runs: int = 20, warmup: int = 5
) -> NodeProfileReport:
    """Profile ``runs`` inferences of ``model`` at ``batch_size`` on ``provider`` (after ``warmup``)."""
    name = ALIASES.get(provider.lower())
    if name is None:
        raise ConfigError(f"provider {provider!r} is not known; expected cpu, cuda or tensorrt")
    if batch_size <= 0 or runs <= 0 or warmup < 0:
        raise ConfigError(f"batch size and runs must be positive and warm-up >= 0, got {batch_size}, {runs}, {warmup}")
    if not Path(model).is_file():
        raise ModelFileError(f"model file '{model}' does not exist")
    providers = [name] if name == CPU else [name, CPU]
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(model, sess_options=so, providers=providers)
        inp = session.get_inputs()[0]
        x = np.random.default_rng(0).random((batch_size, *inp.shape[1:]), dtype=np.float32)
        for _ in range(warmup + runs):
            session.run(None, {inp.name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    # Count only the last ``runs`` runs: the first ones pick kernels and allocate memory.
    starts = sorted(ev["ts"] for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    first = starts[-runs] if len(starts) >= runs else 0
    timed = [ev for ev in events if ev.get("ts", 0) >= first]
    rows = summarize_trace(timed, runs)
    return NodeProfileReport(
        model=model,
        provider=session.get_providers()[0],
        batch_size=batch_size,
        runs=runs,
        total_ms=sum(r.ms for r in rows),
        results=tuple(rows),
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path())
@provider_option(default="cpu", help="cpu, cuda or tensorrt")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--runs", type=int, default=20, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@format_option("table", "json", "csv")
@one_line_errors
def main(model: str, fmt: str, **options: Any) -> None:
    """Per-node kernel time of MODEL from onnxruntime's profiler, slowest first."""
    click.echo(profile_nodes(model, **options).render(fmt))


if __name__ == "__main__":
    main()
