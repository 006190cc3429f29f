"""Which INT8 layout is fastest on this CPU: QDQ or QOperator, U8S8 or S8S8.

``python -m nin_edge.benchmarks.int8_formats`` quantizes one FP32 export four ways with the same
calibration images, then times each (and FP32) through ``Classifier`` in interleaved rounds, so
slow drift of the machine hits every variant alike. nin-export's CPU default follows this result.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.precision import load_images, quantize_int8
from nin_edge.export.timing import measure_interleaved, summarize
from nin_edge.models import model_card
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.common import CommaList, format_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.report import Report, format_table

VARIANTS = {
    "QDQ U8S8": ("qdq", "uint8"),
    "QDQ S8S8": ("qdq", "int8"),
    "QOperator U8S8": ("qoperator", "uint8"),
    "QOperator S8S8": ("qoperator", "int8"),
}


@dataclass(frozen=True)
class FormatReport(Report):
    """Median latency (ms) per variant and batch size."""

    model: str
    calibration: str
    rounds: int
    results: tuple[dict, ...]

    def rows(self) -> list[dict]:
        return list(self.results)

    def to_table(self) -> str:
        return f"{self.model}, calibration: {self.calibration}, {self.rounds} rounds\n" + format_table(self.rows())


def compare_formats(
    *,
    model: str = "nin",
    weights: str | None = None,
    calibration_data: str = "synthetic",
    batch_sizes=(1, 8, 32),
    rounds: int = 5,
    runs: int = 5,
    calibration_size: int = 200,
    input_size: int = 224,
) -> FormatReport:
    """Quantize ``model`` in each variant and time them all against FP32."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        run_export(
            ExportConfig(
                model=model,
                weights=weights,
                random_init=weights is None,
                output=str(fp32),
                input_size=input_size,
                check_batch_sizes=(1,),
            )
        )
        card = model_card(model)
        calib = load_images(
            calibration_data, size=input_size, channels=card.in_channels, limit=calibration_size, pre=card.preprocessing
        )
        paths = {"FP32": fp32}
        for name, (fmt, act) in VARIANTS.items():
            paths[name] = Path(tmp) / f"{fmt}-{act}.onnx"
            quantize_int8(fp32_path=fp32, output=paths[name], calibration=calib, quant_format=fmt, activation=act)
        clfs = {name: Classifier(p, "cpu", max_batch=max(batch_sizes)) for name, p in paths.items()}
        rows = []
        for batch in batch_sizes:
            x = np.random.default_rng(0).random((batch, card.in_channels, input_size, input_size), dtype=np.float32)
            fns = {name: (lambda clf=clf, x=x: clf.logits(x)) for name, clf in clfs.items()}
            times = measure_interleaved(fns, rounds=rounds, runs=runs, pause=0.1)
            fp32_ms = summarize(times["FP32"]).p50_ms
            for name, values in times.items():
                ms = summarize(values).p50_ms
                rows.append({"batch_size": batch, "variant": name, "p50_ms": ms, "speedup_vs_fp32": fp32_ms / ms})
    return FormatReport(model=model, calibration=calib.source, rounds=rounds, results=tuple(rows))


@click.command()
@click.option("--model", default="nin", show_default=True)
@click.option(
    "--weights", default=None, help="Checkpoint to quantize [default: random init; speed does not depend on it]."
)
@click.option("--calibration-data", default="synthetic", show_default=True)
@click.option("--batch-sizes", type=CommaList(int, positive=True), default="1,8,32", show_default=True)
@click.option("--rounds", type=int, default=5, show_default=True)
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.MARKDOWN)
@one_line_errors
def main(fmt: str, **options: Any) -> None:
    """Time QDQ/QOperator x U8S8/S8S8 INT8 variants against FP32 on this CPU."""
    click.echo(compare_formats(**options).render(fmt))


if __name__ == "__main__":
    main()
