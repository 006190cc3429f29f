"""The whole export as one library call: ``run_export(ExportConfig(...)) -> ExportSummary``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nin_edge.models import FASHION_MNIST_CLASSES, ZooModel, create_model, load_weights, profile_model
from nin_edge.runtime.errors import CheckFailedError, ConfigError
from nin_edge.runtime.files import atomic_output, check_writable
from nin_edge.runtime.metadata import ModelMetadata
from nin_edge.runtime.report import Report, format_pairs, format_table

from .steps import ParityResult, check_graph, check_opset, check_parity, export_onnx, simplify, write_metadata


@dataclass(frozen=True)
class ExportConfig:
    """Options of an export; each field is also the ``nin-export`` flag of the same name."""

    model: str = "nin"
    opset: int = 17
    weights: str | None = None
    output: str | None = None
    input_size: int = 224
    in_channels: int = 1
    num_classes: int = 10
    simplify: bool = True
    check_batch_sizes: tuple[int, ...] = (1, 2, 7)
    atol: float = 1e-4
    seed: int = 0

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path(f"{self.model}.onnx")

    def validate(self) -> None:
        """Check every option that can be checked before any work starts."""
        check_opset(self.opset)
        if not self.check_batch_sizes or any(
            isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in self.check_batch_sizes
        ):
            raise ConfigError(
                f"check batch sizes must be positive whole numbers, got {list(self.check_batch_sizes)}; e.g. 1,2,7"
            )
        if not isinstance(self.atol, (int, float)) or not math.isfinite(self.atol) or self.atol <= 0:
            raise ConfigError(f"atol must be a positive number, got {self.atol!r}")
        check_writable(self.output_path)


@dataclass(frozen=True)
class ExportSummary(Report):
    """What was exported, from which weights, how it checks out and what it costs."""

    model: str
    output: str
    weights: str
    opset: int
    input_size: int
    in_channels: int
    num_classes: int
    params: int
    macs: int
    file_bytes: int
    nodes_exported: int
    nodes_final: int
    simplified: bool
    ops: dict[str, int]
    parity: ParityResult
    seconds: float = 0.0
    labels: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict]:
        flat = {k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list))}
        flat["parity_max_abs_err"] = self.parity.max_abs_err
        flat["parity_passed"] = self.parity.passed
        return [flat]

    def to_table(self) -> str:
        pairs = [
            ("model", self.model),
            ("output", self.output),
            ("weights", self.weights),
            ("opset", self.opset),
            ("input", f"float32 (batch, {self.in_channels}, {self.input_size}, {self.input_size})"),
            ("classes", self.num_classes),
            ("parameters", self.params),
            ("MACs per image", self.macs),
            ("file size", f"{self.file_bytes / 1e6:.2f} MB ({self.file_bytes:,} bytes)"),
            ("nodes", f"{self.nodes_exported} exported -> {self.nodes_final} final"
             + ("" if self.simplified else " (not simplified)")),
            ("ops", ", ".join(f"{k} {v}" for k, v in self.ops.items())),
            ("time", f"{self.seconds:.2f} s"),
        ]  # fmt: skip
        verdict = "passed" if self.parity.passed else "FAILED"
        return (
            format_pairs(pairs)
            + f"\n\nparity against PyTorch ({self.parity.provider}, atol {self.parity.atol:g}): {verdict}\n"
            + format_table(self.parity.rows())
        )


def class_labels(num_classes: int) -> tuple[str, ...]:
    """Fashion-MNIST's class names for 10 classes, otherwise ``class_0`` ... ``class_{n-1}``."""
    if num_classes == len(FASHION_MNIST_CLASSES):
        return FASHION_MNIST_CLASSES
    return tuple(f"class_{i}" for i in range(num_classes))


def build_model(config: ExportConfig) -> tuple[ZooModel, str]:
    """Create the model and load its weights; returns it with a description of the weights."""
    # A private RNG stream, so a random-init export is reproducible from the seed in its metadata
    # without reseeding the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(
            config.model, in_channels=config.in_channels, num_classes=config.num_classes, input_size=config.input_size
        )
    if config.weights:
        loaded = load_weights(model, config.weights)
        return model, f"sha256:{loaded.sha256}"
    return model, f"random-init seed {config.seed}"


def run_export(config: ExportConfig) -> ExportSummary:
    """Export, simplify, check, label and verify one model; the output appears only if all passes.

    Raises a :class:`~nin_edge.runtime.errors.NinEdgeError` subclass for bad options, bad weights or
    a failed check; an existing file at the output path is then left as it was.
    """
    start = time.perf_counter()
    config.validate()
    model, weights = build_model(config)
    profile = profile_model(model, config.input_size)
    labels = class_labels(config.num_classes)
    with atomic_output(config.output_path) as tmp:
        exported = export_onnx(model=model, output=tmp, opset=config.opset, input_size=config.input_size)
        nodes_final = exported.nodes
        if config.simplify:
            nodes_final = simplify(path=tmp).nodes_after
        write_metadata(
            path=tmp,
            metadata=ModelMetadata(
                model=config.model,
                input_size=config.input_size,
                in_channels=config.in_channels,
                labels=labels,
                weights=weights,
                opset=config.opset,
            ),
        )
        graph = check_graph(path=tmp, opset=config.opset, simplified=config.simplify)
        parity = check_parity(
            model=model,
            onnx_path=tmp,
            batch_sizes=tuple(config.check_batch_sizes),
            atol=config.atol,
            input_size=config.input_size,
            seed=config.seed,
        )
        if not parity.passed:
            worst = max(parity.batches, key=lambda r: r.max_abs_err)
            raise CheckFailedError(
                f"parity check failed: max abs error {worst.max_abs_err:.3g} at batch {worst.batch_size} "
                f"exceeds atol {config.atol:g}; '{config.output_path}' was not written"
            )
        file_bytes = tmp.stat().st_size
    return ExportSummary(
        model=config.model,
        output=str(config.output_path),
        weights=weights,
        opset=config.opset,
        input_size=config.input_size,
        in_channels=config.in_channels,
        num_classes=config.num_classes,
        params=profile.params,
        macs=profile.macs,
        file_bytes=file_bytes,
        nodes_exported=exported.nodes,
        nodes_final=nodes_final,
        simplified=config.simplify,
        ops=graph.ops,
        parity=parity,
        seconds=time.perf_counter() - start,
        labels=labels,
    )
