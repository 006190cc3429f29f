"""``python -m nin_edge.benchmarks.data_loading``: training speed from image files against the IDX path.

Fashion-MNIST's training images are written out once as a class folder of PNGs (or, with
``--image-side`` above 28, upscaled and saved as JPEGs, like camera photos that each need decoding
and resizing); then NiN trains
(SGD, real forward and backward passes) for ``steps`` batches from the in-memory IDX arrays and
for as many from the PNG folder (decoded by ``workers`` DataLoader processes with the runtime's
reader and preprocessing), alternating the two ``rounds`` times in one process so that a busy
shared machine slows both alike. The loaders are also timed alone (no model), which is what
decoding costs. With ``--cache-dir`` the folder is read a third way, through nin-train's decoded
cache (filled by one pass first). Medians of the rounds are reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from nin_edge.models.batches import Batches
from nin_edge.models.cards import FASHION_MNIST_CLASSES
from nin_edge.models.data import load_split
from nin_edge.models.datasets import open_data
from nin_edge.models.registry import create_model, model_card
from nin_edge.runtime.cli.common import format_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_table
from torch import nn


@dataclass(frozen=True)
class DataLoadingConfig:
    """Options of the benchmark; each field is also its flag."""

    data: str = ""
    folder: str = "fashion-mnist-png"
    images: int = 20000
    steps: int = 60
    rounds: int = 2
    batch_size: int = 128
    input_size: int = 112
    workers: int = 2
    image_side: int = 28
    cache_dir: str | None = None

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("--data is required: the Fashion-MNIST IDX folder")
        if not is_whole_number(self.image_side, minimum=FASHION_SIDE):
            raise ConfigError(f"image side must be a whole number from {FASHION_SIDE}, got {self.image_side!r}")
        for name in ("images", "steps", "rounds", "batch_size", "input_size"):
            if not is_whole_number(getattr(self, name), minimum=1):
                raise ConfigError(f"{name} must be a positive whole number, got {getattr(self, name)!r}")
        if not is_whole_number(self.workers, minimum=0):
            raise ConfigError(f"workers must be a whole number from 0, got {self.workers!r}")


@dataclass(frozen=True)
class LoadingRow:
    """One source, medians over the rounds."""

    source: str
    workers: int
    train_samples_per_s: float
    loader_only_samples_per_s: float
    first_batch_s: float
    rounds: int


@dataclass(frozen=True)
class DataLoadingReport(Report):
    """Training and loading speed from IDX and from the PNG folder."""

    input_size: int
    batch_size: int
    steps: int
    results: tuple[LoadingRow, ...]
    folder: str
    folder_bytes: int

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.results]

    def to_table(self) -> str:
        idx, files, *cached = self.results
        lines = [
            format_table(self.rows()),
            f"image files train at {files.train_samples_per_s / idx.train_samples_per_s:.1%} of the IDX path's "
            f"samples/s ({self.steps} steps of {self.batch_size} at {self.input_size}x{self.input_size}); folder "
            f"{self.folder}, {self.folder_bytes / 1e6:.1f} MB",
        ]
        for row in cached:
            lines.append(
                f"through the cache: loader {row.loader_only_samples_per_s / files.loader_only_samples_per_s:.2f}x, "
                f"training {row.train_samples_per_s / files.train_samples_per_s:.2f}x the uncached files"
            )
        return "\n".join(lines)


#: Fashion-MNIST's own image side.
FASHION_SIDE = 28


def write_image_folder(
    data: str, folder: Path, limit: int | None, split_name: str = "train", side: int = FASHION_SIDE
) -> int:
    """Write the first ``limit`` images of a split as ``folder/<class>/<n>.png`` (once); returns its bytes.

    With ``side`` above 28 each image is upscaled to ``side`` x ``side`` and saved as a JPEG instead.
    Called once per split (``root/train``, ``root/test``) it makes a folder that nin-train reads as
    Fashion-MNIST itself, for comparing accuracy with the IDX path (see docs/measured.md)."""
    from PIL import Image

    split = load_split(data, split_name, limit)
    done = folder / ".complete"
    if done.exists() and done.read_text().strip() not in ("", str(side)):
        raise ConfigError(
            f"'{folder}' holds images of side {done.read_text().strip()}, not {side}; give another --folder"
        )
    suffix = ".png" if side == FASHION_SIDE else ".jpg"
    if not done.exists():
        for name in FASHION_MNIST_CLASSES:
            (folder / name.replace("/", "-")).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
            im = Image.fromarray(image, "L")
            if side != FASHION_SIDE:
                im = im.resize((side, side), Image.Resampling.BILINEAR).convert("RGB")
            im.save(folder / FASHION_MNIST_CLASSES[label].replace("/", "-") / f"{i:05d}{suffix}")
        done.write_text(str(side))
    return sum(p.stat().st_size for p in folder.rglob(f"*{suffix}"))


def _time(batches: Batches, steps: int, step: Any) -> tuple[float, float]:
    """Samples per second after the first batch, and the first batch's wait (worker start-up)."""
    t0 = time.perf_counter()
    seen, first, start = 0, 0.0, 0.0
    for i, (x, labels) in enumerate(batches):
        step(x, labels)
        if i == 0:
            first = time.perf_counter() - t0
            start = time.perf_counter()
        else:
            seen += len(labels)
        if i + 1 >= steps:
            break
    return seen / (time.perf_counter() - start), first


def run_data_loading(config: DataLoadingConfig) -> DataLoadingReport:
    """Measure; see the module docstring."""
    config.validate()
    folder = Path(config.folder)
    folder_bytes = write_image_folder(config.data, folder, config.images, side=config.image_side)
    idx = open_data(config.data).split("train").head(config.images)
    files = open_data(folder).split("train")
    kind = "png" if config.image_side == FASHION_SIDE else "jpeg"
    pre = model_card("nin").preprocessing
    model = create_model("nin", input_size=config.input_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss_fn(model(x), labels).backward()
        optimizer.step()

    sources: list[tuple[str, Any, str | None]] = [("idx", idx, None), (kind, files, None)]
    if config.cache_dir:
        sources.append((f"{kind} + cache", files, config.cache_dir))
    sizes = {name: len(samples) for name, samples, _ in sources}
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sizes}

    def batches(samples: Any, r: int, cache: str | None) -> Batches:
        return Batches(
            samples,
            channels=1,
            size=config.input_size,
            pre=pre,
            batch_size=config.batch_size,
            workers=config.workers,
            shuffle=True,
            generator=torch.Generator().manual_seed(r),
            cache=cache,
        )

    if config.cache_dir:
        for _ in batches(files, 0, config.cache_dir):  # fills the cache, as nin-train's first epoch does
            pass
    for r in range(config.rounds):
        for name, samples, cache in sources:
            train_rate, first = _time(batches(samples, r, cache), config.steps, train_step)
            load_rate, _ = _time(batches(samples, r, cache), config.steps, lambda x, y: None)
            measured[name].append((train_rate, load_rate, first))
    rows = tuple(
        LoadingRow(
            source=f"{name} ({sizes[name]} images)",
            workers=0 if name == "idx" else config.workers,  # IDX batches are resized in the main process
            train_samples_per_s=round(statistics.median(m[0] for m in runs), 1),
            loader_only_samples_per_s=round(statistics.median(m[1] for m in runs), 1),
            first_batch_s=round(float(np.median([m[2] for m in runs])), 3),
            rounds=len(runs),
        )
        for name, runs in measured.items()
    )
    return DataLoadingReport(
        input_size=config.input_size,
        batch_size=config.batch_size,
        steps=config.steps,
        results=rows,
        folder=str(folder),
        folder_bytes=folder_bytes,
    )


_D = DataLoadingConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", default="", help="The Fashion-MNIST IDX folder.")
@click.option("--folder", default=_D.folder, show_default=True, help="Where the image folder is written (once).")
@click.option("--images", type=int, default=_D.images, show_default=True, help="Training images written and read.")
@click.option("--steps", type=int, default=_D.steps, show_default=True, help="Training steps per source and round.")
@click.option("--rounds", type=int, default=_D.rounds, show_default=True)
@click.option("--batch-size", type=int, default=_D.batch_size, show_default=True)
@click.option("--input-size", type=int, default=_D.input_size, show_default=True)
@click.option("--workers", type=int, default=_D.workers, show_default=True, help="DataLoader processes for the files.")
@click.option(
    "--image-side",
    type=int,
    default=_D.image_side,
    show_default=True,
    help="Side of the written images: 28 writes PNGs as they are; more upscales and writes JPEGs (photo-like).",
)
@click.option("--cache-dir", default=None, help="Also read the folder through nin-train's decoded cache here.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def main(fmt: str, **options: Any) -> None:
    """Training samples/s from an image class folder against the in-memory IDX path (interleaved)."""
    click.echo(run_data_loading(DataLoadingConfig(**options)).render(fmt))


if __name__ == "__main__":
    main()
