"""``python -m nin_edge.benchmarks.gpu_check``: prove a GPU provider gives the CPU provider's answers.

For each precision the shipped NiN is exported (through the bench cache), then the first ``limit``
Fashion-MNIST test images are classified from raw uint8 pixels, as an app would, by a CPU and a
GPU :class:`~nin_edge.runtime.Classifier`. The check fails unless the GPU provider is the one in
use, every node of the graph runs on it (onnxruntime's ``session.disable_cpu_ep_fallback``), the
IO-binding path of ``nin-bench`` returns the same logits, and top-1 agreement reaches the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnxruntime as ort
from nin_edge.models import model_card
from nin_edge.models.cli import DATA_HELP
from nin_edge.models.datasets import open_data
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.common import (
    CommaList,
    format_option,
    input_size_option,
    one_line_errors,
    provider_option,
    renamed_option,
)
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError, ModelFileError, NinEdgeError, ProviderError
from nin_edge.runtime.core.files import atomic_output
from nin_edge.runtime.core.report import Report, format_table
from nin_edge.runtime.providers import CPU, CUDA, missing_provider_message, parse_provider
from nin_edge.runtime.session import plain_session

from .bench import cached_export, default_cache_dir, timed_call


@dataclass(frozen=True)
class GpuCheckConfig:
    """Options of the GPU check; each field is also its flag."""

    data: str = ""
    provider: str = "cuda"
    precision: tuple[str, ...] = ("fp32", "fp16")
    input_size: int = model_card("nin").export_size(use_weights=True)  # the shipped NiN at its training size
    limit: int = 1000
    max_batch: int = 100
    min_agreement: float = 0.995
    cache_dir: str | None = None

    def validate(self) -> None:
        if not parse_provider(self.provider).is_gpu:
            raise ConfigError(f"provider must be a GPU provider (cuda or tensorrt), got {self.provider!r}")
        if not self.data:
            raise ConfigError("--data is required: the Fashion-MNIST IDX folder, or labelled images of its 10 classes")
        if self.limit <= 0 or self.max_batch <= 0:
            raise ConfigError(f"--limit and --max-batch must be positive, got {self.limit} and {self.max_batch}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ConfigError(f"--min-agreement must lie in 0..1, got {self.min_agreement}")


@dataclass(frozen=True)
class GpuCheckRow:
    """One precision on the GPU provider against the CPU provider."""

    precision: str
    images: int
    provider_in_use: str
    all_nodes_on_gpu: bool
    placement_note: str
    io_binding_ok: bool
    agreement: float
    max_abs_logit_diff: float
    accuracy_cpu: float
    accuracy_gpu: float
    passed: bool


@dataclass(frozen=True)
class GpuCheckReport(Report):
    """The check's rows, one per precision."""

    provider: str
    results: tuple[GpuCheckRow, ...]

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.results]

    def to_table(self) -> str:
        return f"GPU provider {self.provider} against {CPU}\n" + format_table(self.rows())


def all_nodes_on(model: str, provider: str, device_id: int = 0) -> tuple[bool, str]:
    """Whether onnxruntime can place every node on ``provider`` with CPU fallback forbidden."""
    try:
        plain_session(model, provider=provider, options={"device_id": str(device_id)}, cpu_fallback=False)
    except ModelFileError as exc:  # the message names the node it could not place
        return False, " ".join(str(exc).split())[:300]
    return True, "every node on " + provider


def _logits(clf: Classifier, images: list[np.ndarray], batch: int) -> np.ndarray:
    return np.concatenate([clf.logits(images[i : i + batch]) for i in range(0, len(images), batch)])


def run_gpu_check(config: GpuCheckConfig) -> GpuCheckReport:
    """Compare the GPU provider with the CPU provider on real test images, per precision."""
    config.validate()
    name = parse_provider(config.provider).name
    available = ort.get_available_providers()
    if name not in available:  # before any export: say at once that this machine cannot run the check
        raise ProviderError(missing_provider_message(name, available))
    data = open_data(config.data)  # the one loader: IDX, class folders or a manifest
    data.check_classes(model_card("nin").labels, "the shipped NiN")
    split = data.split(data.eval_split).head(config.limit)
    images = [split.raw(i) for i in range(len(split))]
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    rows = []
    for precision in config.precision:
        path = cached_export("nin", config.input_size, precision, cache)
        cpu = Classifier(path, "cpu", max_batch=config.max_batch)
        gpu = Classifier(path, config.provider, max_batch=config.max_batch)
        if gpu.providers[0] != name:
            raise CheckFailedError(f"asked for {name} but the session runs on {', '.join(gpu.providers)}")
        on_gpu, note = all_nodes_on(str(path), name) if name == CUDA else (True, "TensorRT places nodes itself")
        try:
            x = gpu.prepare(images[: config.max_batch])
            timed_call(gpu, x, io_binding=True)
            io_ok = True
        except NinEdgeError:
            io_ok = False
        a, b = _logits(cpu, images, config.max_batch), _logits(gpu, images, config.max_batch)
        agreement = float(np.mean(a.argmax(1) == b.argmax(1)))
        rows.append(
            GpuCheckRow(
                precision=precision,
                images=len(split),
                provider_in_use=gpu.providers[0],
                all_nodes_on_gpu=on_gpu,
                placement_note=note,
                io_binding_ok=io_ok,
                agreement=agreement,
                max_abs_logit_diff=float(np.max(np.abs(a - b))),
                accuracy_cpu=float(np.mean(a.argmax(1) == split.labels)),
                accuracy_gpu=float(np.mean(b.argmax(1) == split.labels)),
                passed=on_gpu and io_ok and agreement >= config.min_agreement,
            )
        )
    return GpuCheckReport(provider=name, results=tuple(rows))


_G = GpuCheckConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", default="", help=DATA_HELP + " Its test (else val) split is classified.")
@renamed_option("--data-dir", "--data", "data", type=str)
@provider_option(default=_G.provider, help="cuda or tensorrt")
@click.option("--precision", type=CommaList(str), default=",".join(_G.precision), show_default=True)
@input_size_option(default=_G.input_size)
@click.option("--limit", type=int, default=_G.limit, show_default=True, help="The first N test images.")
@click.option("--max-batch", type=int, default=_G.max_batch, show_default=True, help="Largest batch per run.")
@renamed_option("--batch-size", "--max-batch", "max_batch", type=int)
@click.option("--min-agreement", type=float, default=_G.min_agreement, show_default=True)
@click.option("--cache-dir", type=click.Path(), default=None, help="Where exported models are cached.")
@click.option("--output", type=click.Path(), default=None, help="Also write the result in --format to this file.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON)
@one_line_errors
def main(fmt: str, output: str | None, **options: Any) -> None:
    """Top-1 agreement, node placement and IO binding of a GPU provider against the CPU provider."""
    report = run_gpu_check(GpuCheckConfig(**options))
    text = report.render(fmt)
    click.echo(text)
    if output:
        with atomic_output(output) as tmp:
            Path(tmp).write_text(text + "\n")
    failed = [r.precision for r in report.results if not r.passed]
    if failed:
        raise CheckFailedError(f"the GPU check failed for {', '.join(failed)}; see the table above")


if __name__ == "__main__":
    main()
