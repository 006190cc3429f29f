"""What a verified export is: the checks' summary (:class:`ExportSummary`, with a reduced precision's
:class:`PrecisionReport`) and the in-memory model every deploy target receives (:class:`VerifiedModel`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nin_edge.runtime.core.metadata import ModelMetadata
from nin_edge.runtime.core.report import Report, format_pairs, format_table

from .config import ExportConfig
from .steps import (
    ParityResult,
)
from .targets.triton import TritonRepo


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
    precision: str = "fp32"
    reduced: PrecisionReport | None = None
    triton: TritonRepo | None = None
    deployed: tuple[Report, ...] = ()

    def to_dict(self) -> dict:
        data = super().to_dict()
        if not self.deployed:  # the JSON of an export without extra targets stays as it was
            data.pop("deployed")
        return data

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
            ("precision", self.precision),
            ("input", f"float32 (batch, {self.in_channels}, {self.input_size}, {self.input_size})"),
            ("classes", self.num_classes),
            ("parameters", self.params),
            ("MACs per image", self.macs),
            ("file size", f"{self.file_bytes / 1e6:.2f} MB ({self.file_bytes:,} bytes)"),
            (
                "nodes",
                f"{self.nodes_exported} exported -> {self.nodes_final} final"
                + ("" if self.simplified else " (not simplified)"),
            ),
            ("ops", ", ".join(f"{k} {v}" for k, v in self.ops.items())),
            ("time", f"{self.seconds:.2f} s"),
        ]
        verdict = "passed" if self.parity.passed else "FAILED"
        text = (
            format_pairs(pairs)
            + f"\n\nparity of the FP32 graph against PyTorch ({self.parity.provider}, atol {self.parity.atol:g}): "
            f"{verdict}\n" + format_table(self.parity.rows())
        )
        if self.reduced is not None:
            text += f"\n\n{self.precision} against FP32\n" + self.reduced.to_table()
        if self.triton is not None:
            text += f"\n\nTriton model repository: {self.triton.model_dir}\n{self.triton.config_text}"
        for report in self.deployed:
            text += "\n\n" + report.to_table()
        return text


@dataclass(frozen=True)
class PrecisionReport(Report):
    """A reduced-precision model against its FP32 source on the same images."""

    precision: str
    calibration: str
    eval_images: str
    images: int
    top1_agreement: float
    max_abs_err: float
    mean_abs_err: float
    accuracy_fp32: float | None
    accuracy_reduced: float | None
    fp32_bytes: int
    reduced_bytes: int
    provider: str
    latency_ms: dict[str, dict[str, float]]
    #: FP32's accuracy minus the reduced model's, in points (None without labels).
    accuracy_drop_points: float | None = None
    #: INT8 only: the machine class and recipe, and the nodes kept FP32 with their share of the MACs.
    recipe: str = ""
    #: INT8 only: the arithmetic the agreement was measured in (this CPU's kernels, or unfused Q/DQ for another's).
    gate_arithmetic: str = ""

    def to_table(self) -> str:
        lat = self.latency_ms
        pairs = [
            ("precision", self.precision),
            *([("recipe", self.recipe)] if self.recipe else []),
            *([("gate arithmetic", self.gate_arithmetic)] if self.gate_arithmetic else []),
            ("calibration", self.calibration or "-"),
            ("compared on", f"{self.images} images ({self.eval_images})"),
            ("top-1 agreement", f"{self.top1_agreement:.4f}"),
            ("logit error", f"max {self.max_abs_err:.4g}, mean {self.mean_abs_err:.4g}"),
            ("file size", f"{self.reduced_bytes:,} bytes, {100 * self.reduced_bytes / self.fp32_bytes:.1f}% of FP32"),
        ]
        if self.accuracy_fp32 is not None:
            pairs.append(
                (
                    "accuracy",
                    f"fp32 {self.accuracy_fp32:.4f}, {self.precision} {self.accuracy_reduced:.4f} "
                    f"(drop {self.accuracy_drop_points:+.2f} points)",
                )
            )
        for batch in lat["fp32"]:
            fp32, red = lat["fp32"][batch], lat[self.precision][batch]
            pairs.append(
                (
                    f"latency batch {batch}",
                    f"fp32 {fp32:.2f} ms, {self.precision} {red:.2f} ms ({fp32 / red:.2f}x) on {self.provider}",
                )
            )
        return format_pairs(pairs)


@dataclass(frozen=True)
class VerifiedModel:
    """What every deploy target receives: the verified model in memory and its card.

    ``data`` is the serialised, checked ONNX model; ``metadata`` the card it carries (input size,
    channels, labels, preprocessing); ``config`` the resolved options that made it; ``summary``
    the checks and costs (its ``output`` is where the ``onnx`` target would write it).
    """

    data: bytes
    metadata: ModelMetadata
    config: ExportConfig
    summary: ExportSummary
