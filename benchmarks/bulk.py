"""Bulk nin-infer against nin-bench: throughput, peak memory and agreement on real PNG files.

``python -m nin_edge.benchmarks.bulk --model nin.onnx --data FASHION_MNIST_FOLDER --images 10000``
writes the Fashion-MNIST test images as PNG files (more than 10,000 are hard links to them in
further folders, so the decoding work is real but the disk cost is not), then in interleaved rounds
runs ``nin-bench`` on the same model, provider and batch and ``nin-infer FOLDER --output out.csv`` in
a child process that reports its own peak resident memory (``VmHWM``; ``ru_maxrss`` of a child
includes the parent's peak at fork). ``--check`` compares every row with ``Classifier.classify`` on
that image alone; ``--ray-actors 1,2`` adds ``nin-infer --engine ray`` runs.
"""

from __future__ import annotations

import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.common import CommaList, format_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.files import IMAGES_MAGIC, read_idx
from nin_edge.runtime.core.report import Report, format_table

# Runs nin-infer in this interpreter and prints the process's own peak memory when it exits.
_CHILD = (
    "import atexit, sys\n"
    "def peak():\n"
    "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "    sys.stderr.write('peak ' + hwm.split()[1] + ' kB\\n')\n"
    "atexit.register(peak)\n"
    "from nin_edge.runtime.cli.infer import main\n"
    "main(sys.argv[1:], prog_name='nin-infer')\n"
)
_SUMMARY = re.compile(r"^([\d,]+) images, ([\d,]+) errors?.*?, ([\d.]+) s, ([\d,.]+) images/s", re.MULTILINE)


@dataclass(frozen=True)
class BulkReport(Report):
    """Median images/s per way of running, its ratio to nin-bench, and peak memory."""

    model: str
    provider: str
    max_batch: int
    images: int
    rounds: int
    results: tuple[dict, ...]
    mismatches: int | None = None

    def rows(self) -> list[dict]:
        return list(self.results)

    def to_table(self) -> str:
        head = f"{self.model}, {self.images:,} PNG images, provider {self.provider}, batch {self.max_batch}"
        check = (
            ""
            if self.mismatches is None
            else f"\nrows unlike Classifier.classify on the image alone: {self.mismatches}"
        )
        return head + "\n" + format_table(self.results) + check


def write_pngs(data: str, folder: Path, count: int) -> Path:
    """The Fashion-MNIST test images as PNG files under ``folder`` (reused when already there)."""
    from PIL import Image

    images = read_idx(Path(data) / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC)
    first = folder / "copy0"
    first.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images[: min(count, len(images))]):
        if not (first / f"{i:05d}.png").exists():
            Image.fromarray(image).save(first / f"{i:05d}.png")
    made = min(count, len(images))
    copy = 1
    while made < count:
        target = folder / f"copy{copy}"
        target.mkdir(exist_ok=True)
        for i in range(min(len(images), count - made)):
            if not (target / f"{i:05d}.png").exists():
                os.link(first / f"{i:05d}.png", target / f"{i:05d}.png")
        made += min(len(images), count - made)
        copy += 1
    return folder


def bench_images_per_s(model: str, provider: str, batch: int, input_size: int) -> float:
    """``nin-bench``'s throughput for ``model`` as given (its "as given" row)."""
    bench = Path(sys.executable).with_name("nin-bench")
    args = ["--model-path", model, "--models", "nin", "--input-size", str(input_size), "--batch-sizes", str(batch)]
    done = subprocess.run(
        [str(bench), *args, "--provider", provider, "--format", "csv"], capture_output=True, text=True, check=True
    )
    rows = list(csv.DictReader(done.stdout.splitlines()))
    return float(next(r for r in rows if r["precision"] == "as given")["throughput"])


def infer(args: list[str]) -> tuple[float, float]:
    """Run nin-infer in a child; its images/s (from the summary line) and peak memory in MB."""
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True)
    summary = _SUMMARY.search(done.stderr)
    peak = re.search(r"^peak (\d+) kB", done.stderr, re.MULTILINE)
    if done.returncode != 0 or not summary or not peak:
        raise click.ClickException(f"nin-infer {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return float(summary.group(4).replace(",", "")), int(peak.group(1)) / 1024


def mismatches(model: str, provider: str, out: Path) -> int:
    """Rows whose label or probability differ from ``Classifier.classify`` run on their image alone."""
    clf = Classifier(model, provider)
    bad = 0
    with open(out, newline="") as fh:
        for row in csv.DictReader(fh):
            want = clf.classify(row["input"])[0][0]
            bad += row["label"] != want.label or abs(float(row["probability"]) - want.probability) > 1e-5
    return bad


def run_bulk_benchmark(
    model: str,
    data: str,
    images: int,
    provider: str,
    max_batch: int,
    rounds: int,
    workers: tuple[int, ...],
    ray_actors: tuple[int, ...],
    check: bool,
    workdir: str | None,
) -> BulkReport:
    """Measure, in ``rounds`` interleaved rounds, nin-bench and nin-infer (and Ray) on the same images."""
    root = Path(workdir or tempfile.mkdtemp(prefix="nin-bulk-"))
    folder = write_pngs(data, root / f"png{images}", images)
    size = Classifier(model, provider).input_shape[1]
    out = root / "out.csv"
    common = [model, str(folder), "-o", str(out), "--overwrite", "--provider", provider, "--max-batch", str(max_batch)]
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(rounds):
        runs.setdefault("nin-bench (prepared tensors, no decoding)", []).append(
            (bench_images_per_s(model, provider, max_batch, size), float("nan"))
        )
        for w in workers:
            runs.setdefault(f"nin-infer, {w} decode thread{'s' if w > 1 else ''}", []).append(
                infer([*common, "--workers", str(w)])
            )
        for actors in ray_actors:
            runs.setdefault(f"nin-infer --engine ray, {actors} actor{'s' if actors > 1 else ''}", []).append(
                infer([*common, "--engine", "ray", "--actors", str(actors)])
            )
    reference = statistics.median(r for r, _ in next(iter(runs.values())))
    results = tuple(
        {
            "run": name,
            "images_per_s": round(statistics.median(r for r, _ in values), 1),
            "vs_bench": round(statistics.median(r for r, _ in values) / reference, 3),
            # Ray's actors are processes of their own: the driver's peak says nothing about them.
            "peak_mb": None
            if name.startswith(("nin-bench", "nin-infer --engine"))
            else round(max(m for _, m in values), 1),
            "each": ", ".join(f"{r:.0f}" for r, _ in values),
        }
        for name, values in runs.items()
    )
    bad = None
    if check:
        infer([*common, "--workers", str(workers[0])])
        bad = mismatches(model, provider, out)
    return BulkReport(Path(model).name, provider, max_batch, images, rounds, results, bad)


@click.command()
@click.option("--model", required=True, type=click.Path(exists=True), help="An exported model file.")
@click.option("--data", required=True, type=click.Path(exists=True), help="The Fashion-MNIST IDX folder.")
@click.option("--images", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--provider", default="cpu", show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--workers", type=CommaList(int, positive=True), default="1,2", show_default=True)
@click.option("--ray-actors", type=CommaList(int, positive=True), default=(), help="Also run --engine ray.")
@click.option("--check", is_flag=True, help="Compare every row with Classifier.classify on its image alone.")
@click.option("--workdir", type=click.Path(), default=None, help="Where the PNG files go [default: a temp folder].")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV, OutputFormat.MARKDOWN)
@one_line_errors
def main(fmt: str, **options: Any) -> None:
    """nin-infer on PNG files against nin-bench on the same model, provider and batch."""
    click.echo(run_bulk_benchmark(**options).render(fmt))


if __name__ == "__main__":
    main()
