"""What the runtime adds on top of onnxruntime: warm per-call overhead and cold-start cost.

``python -m nin_edge.benchmarks.overhead MODEL.onnx`` compares, on the same file,
``Classifier.logits`` with a bare ``InferenceSession.run`` (interleaved blocks, so drift hits both
alike), and a fresh process that imports the runtime, loads the model and classifies one 28x28
image with a fresh process doing the same with bare onnxruntime and numpy.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from nin_edge.export.timing import measure_interleaved, summarize
from nin_edge.runtime.cli.common import format_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.report import Report, format_pairs

# Each child prints its own peak RSS (kB) last; see _run_child.
_PEAK = 'print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])\n'

_BARE = (
    """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
k = s.get_inputs()[0].shape[2] // 28  # nearest-neighbour upscale to the model's size (a multiple of 28)
x = np.repeat(np.repeat(img, k, 0), k, 1)[None, None].astype(np.float32) / 255
print(int(s.run(None, {"input": x})[0].argmax()))
"""
    + _PEAK
)

_RUNTIME = (
    """
import sys, numpy as np
from nin_edge.runtime import Classifier
c = Classifier(sys.argv[1], "cpu")
img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
print(c.classify(img)[0][0].index)
"""
    + _PEAK
)


@dataclass(frozen=True)
class OverheadReport(Report):
    """Warm latency and cold start of the runtime against bare onnxruntime."""

    model: str
    batch_size: int
    bare_run_ms: float
    runtime_logits_ms: float
    warm_overhead_pct: float
    bare_cold_s: float
    runtime_cold_s: float
    cold_overhead_pct: float
    bare_peak_rss_mb: float
    runtime_peak_rss_mb: float
    rss_overhead_pct: float
    cold_repeats: int
    load_ms: float
    load_verified_ms: float

    def to_table(self) -> str:
        return format_pairs(
            [
                ("model", self.model),
                (
                    f"warm, batch {self.batch_size}",
                    f"bare run {self.bare_run_ms:.2f} ms, Classifier.logits "
                    f"{self.runtime_logits_ms:.2f} ms ({self.warm_overhead_pct:+.1f}%)",
                ),
                (
                    "cold start",
                    f"bare {self.bare_cold_s:.3f} s, runtime {self.runtime_cold_s:.3f} s "
                    f"({self.cold_overhead_pct:+.1f}%), medians of {self.cold_repeats}",
                ),
                (
                    "load with the weight check",
                    f"{self.load_ms:.1f} ms without, {self.load_verified_ms:.1f} ms with "
                    f"({100 * (self.load_verified_ms / self.load_ms - 1):+.1f}%)",
                ),
                (
                    "peak RSS",
                    f"bare {self.bare_peak_rss_mb:.0f} MB, runtime {self.runtime_peak_rss_mb:.0f} MB "
                    f"({self.rss_overhead_pct:+.1f}%)",
                ),
            ]
        )


def warm_latency(model: str, batch_size: int = 1, blocks: int = 10, runs: int = 30) -> tuple[float, float]:
    """Median latency (ms) of a bare ``session.run`` and of ``Classifier.logits`` on the same file.

    Both use onnxruntime's default session options, so the difference is the runtime's own code.
    """
    from nin_edge.runtime import Classifier
    from nin_edge.runtime.session import plain_session

    bare = plain_session(model)
    clf = Classifier(model, "cpu")
    x = np.random.default_rng(0).random((batch_size, *clf.input_shape), dtype=np.float32)
    fns = {"bare": lambda: bare.run(None, {"input": x}), "runtime": lambda: clf.logits(x)}
    times = measure_interleaved(fns, rounds=blocks, runs=runs, warmup=5)
    return summarize(times["bare"]).p50_ms, summarize(times["runtime"]).p50_ms


def _run_child(code: str, model: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a fresh Python process running ``code``.

    The peak is the child's own ``VmHWM``, printed by the child: the ``ru_maxrss`` that
    ``os.wait4`` reports for a child includes the parent's peak at fork time on Linux.
    """
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, model], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"cold-start child exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    return wall, int(done.stdout.split()[-1]) / 1024


def cold_start(model: str, repeats: int = 7) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall s, peak RSS MB) of fresh bare and runtime processes, run alternately."""
    bare, runtime = [], []
    for _ in range(repeats):
        bare.append(_run_child(_BARE, model))
        runtime.append(_run_child(_RUNTIME, model))

    def med(rows: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)

    return med(bare), med(runtime)


def load_times(model: str, rounds: int = 5) -> tuple[float, float]:
    """Median ms to build a ``Classifier`` without and with the weight-digest check, interleaved."""
    from nin_edge.runtime import Classifier

    fns = {
        "plain": lambda: Classifier(model, "cpu", verify_weights=False),
        "verified": lambda: Classifier(model, "cpu", verify_weights=True),
    }
    times = measure_interleaved(fns, rounds=rounds, runs=1, warmup=1)
    return summarize(times["plain"]).p50_ms, summarize(times["verified"]).p50_ms


def measure_overhead(model: str, batch_size: int = 1, repeats: int = 7) -> OverheadReport:
    """Both measurements for ``model``."""
    bare_ms, rt_ms = warm_latency(model, batch_size)
    (bare_s, bare_mb), (rt_s, rt_mb) = cold_start(model, repeats)
    load_ms, verified_ms = load_times(model)
    return OverheadReport(
        model=str(Path(model)),
        batch_size=batch_size,
        bare_run_ms=bare_ms,
        runtime_logits_ms=rt_ms,
        warm_overhead_pct=100 * (rt_ms / bare_ms - 1),
        bare_cold_s=bare_s,
        runtime_cold_s=rt_s,
        cold_overhead_pct=100 * (rt_s / bare_s - 1),
        bare_peak_rss_mb=bare_mb,
        runtime_peak_rss_mb=rt_mb,
        rss_overhead_pct=100 * (rt_mb / bare_mb - 1),
        cold_repeats=repeats,
        load_ms=load_ms,
        load_verified_ms=verified_ms,
    )


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=7, show_default=True, help="Cold-start processes of each kind."
)
@format_option(OutputFormat.TABLE, OutputFormat.JSON)
@one_line_errors
def main(model: str, batch_size: int, repeats: int, fmt: str) -> None:
    """Measure the runtime's warm and cold-start overhead against bare onnxruntime on MODEL."""
    click.echo(measure_overhead(model, batch_size, repeats).render(fmt))


if __name__ == "__main__":
    main()
