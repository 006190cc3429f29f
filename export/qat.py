"""Quantization-aware training (``nin-qat``): a short fine-tune of a trained NiN under the fake
quantization of one INT8 recipe, so that the INT8 model nin-export makes of it loses less.

The fake quantization mirrors the QDQ graph the recipe makes of this very model: before training,
the model is exported and quantized once as nin-export would (on noise: only the graph's structure
is read), and every layer whose weights, and every tensor that onnxruntime quantizes there, is
fake-quantized in the forward pass with onnxruntime's own integer ranges
(:mod:`nin_edge.models.fake_quant`). The fine-tune is nin-train's loop (``train`` with ``init_from``),
so the output is an ordinary nin-train checkpoint (same keys, card, split record) plus a ``qat``
record: the recipe it was trained for. ``nin-export --precision int8`` of it takes that recipe unless
told otherwise, calibrates and gates as for any model: the ONNX is the same QDQ ONNX.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from nin_edge.models.checkpoint import (
    extract_state_dict,
    load_state_checked,
    read_checkpoint,
)
from nin_edge.models.fake_quant import FakeQuant, FakeQuantSpec, compute_layers
from nin_edge.models.fine_tune import FineTune, fine_tune
from nin_edge.models.prune import build, nin_source
from nin_edge.models.train_checkpoint import EpochStats, save
from nin_edge.models.zoo import ZooModel
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import check_writable, kind_of
from nin_edge.runtime.core.report import Report, format_table
from nin_edge.runtime.int8 import Int8Target
from torch import nn

from .calibration import CalibrationSet
from .precision import COMPUTE_OPS, QAT_KEY, Int8Recipe, choose_recipe, quantize_int8
from .steps import export_onnx

#: The fine-tune's learning rate: about a tenth of nin-train's fine-tune default (see docs/qat.md).
DEFAULT_LR = 5e-5


@dataclass(frozen=True)
class QatConfig:
    """A QAT run; each field is also the ``nin-qat`` flag of the same name. The ``int8_*`` options are
    nin-export's: the recipe the weights are trained for (``int8_target`` auto: this machine's class)."""

    weights: str = ""
    data: str = ""
    int8_target: str = "auto"
    int8_types: str = "auto"
    int8_reduce_range: str = "auto"
    int8_fp32_layers: str = "auto"
    epochs: int = 1
    lr: float = DEFAULT_LR
    batch_size: int | None = None
    #: None: the checkpoint's input size (the shipped weights': 112).
    input_size: int | None = None
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    amp: bool = False
    channels_last: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    output: str = "qat.pt"
    overwrite: bool = False

    def recipe(self) -> Int8Recipe:
        """The INT8 recipe the fine-tune mirrors (nin-export's choice for the same options)."""
        return choose_recipe(
            self.int8_target,
            types=self.int8_types,
            reduce_range=self.int8_reduce_range,
            fp32_layers=self.int8_fp32_layers,
        )

    def validate(self) -> None:
        """Check every option before any checkpoint or data is read."""
        if not self.weights:
            raise ConfigError("--weights is required: the NiN checkpoint (nin-train's .pt) to fine-tune, or pretrained")
        if not self.data:
            raise ConfigError(
                "--data is required: the images the model was trained on (class folders, a manifest or the "
                "Fashion-MNIST IDX folder)"
            )
        if not Path(self.data).exists():
            raise ConfigError(
                f"--data '{self.data}' does not exist; give the images the model was trained on (class folders, "
                "a manifest or the Fashion-MNIST IDX folder)"
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number (e.g. {DEFAULT_LR:g}), got {self.lr!r}")
        self.recipe()
        FineTune.of(self, self.epochs).check(self.input_size or 224)
        check_writable(self.output, "QAT checkpoint")
        if not self.overwrite and kind_of(self.output) == "a regular file" and not _is_qat(self.output):
            raise ConfigError(
                f"'{self.output}' exists and is not a nin-qat checkpoint: this run would replace it; give another "
                "--output, or --overwrite to replace it"
            )


def _is_qat(path: str) -> bool:
    """Whether ``path`` is a checkpoint nin-qat wrote (one it may replace)."""
    try:
        return isinstance(read_checkpoint(path).get(QAT_KEY), Mapping)
    except Exception:  # any unreadable file is not ours
        return False


def qat_record(recipe: Int8Recipe, config: QatConfig) -> dict[str, Any]:
    """The checkpoint's ``qat`` record: the recipe (target, types, reduce_range, fp32_layers), epochs, lr."""
    return {"target": recipe.target, **recipe.metadata(), "epochs": config.epochs, "lr": config.lr}


def fake_quant_plan(model: ZooModel, recipe: Int8Recipe, input_size: int) -> FakeQuantSpec:
    """What ``recipe`` quantizes in ``model``, read off the QDQ graph nin-export's INT8 path makes of it
    (quantized on noise: only the graph's structure is used), with onnxruntime's integer ranges."""
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    layers = compute_layers(model)
    with torch.random.fork_rng(devices=[]):  # the export must not move the fine-tune's random stream
        proto = export_onnx(model=model, opset=17, input_size=input_size).proto
    noise = np.random.default_rng(0).random((2, model.in_channels, input_size, input_size), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="nin-qat-") as scratch:
        fp32, int8 = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save(proto, str(fp32))
        quantize_int8(fp32_path=fp32, output=int8, calibration=CalibrationSet(noise, None, "noise"), recipe=recipe)
        graph = onnx.load(str(int8)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    compute = [node for node in graph.node if node.op_type in COMPUTE_OPS]
    if len(compute) != len(layers):
        raise ConfigError(
            f"the INT8 graph has {len(compute)} Conv/Gemm/MatMul nodes but the model {len(layers)} convolution and "
            "linear layers: nin-qat cannot match them"
        )

    def dequantized(name: str) -> bool:
        return made_by.get(name) == "DequantizeLinear"

    act, weight = {"u8s8": ("UINT8", "INT8"), "u8u8": ("UINT8", "UINT8"), "s8s8": ("INT8", "INT8")}[recipe.types]
    symmetric = recipe.target == Int8Target.TENSORRT.value  # quantize_int8's ActivationSymmetric
    weight_range = get_qmin_qmax_for_qType(getattr(onnx.TensorProto, weight), recipe.reduce_range, symmetric=True)
    act_range = get_qmin_qmax_for_qType(getattr(onnx.TensorProto, act), False, symmetric=symmetric)
    return FakeQuantSpec(
        weight_range=(int(weight_range[0]), int(weight_range[1])),
        activation_range=(int(act_range[0]), int(act_range[1])),
        activation_symmetric=symmetric,
        weights=tuple(i for i, node in enumerate(compute) if dequantized(node.input[1])),
        inputs=tuple(i for i, node in enumerate(compute) if dequantized(node.input[0])),
        output=all(dequantized(out.name) for out in graph.output),
    )


@dataclass(frozen=True)
class QatReport(Report):
    """What a QAT run did: the recipe, the layers fake-quantized and every epoch (held-out accuracy
    measured under the fake quantization)."""

    output: str
    source: str
    recipe: str
    target: str
    quantized_weights: int
    quantized_inputs: int
    output_quantized: bool
    epochs: tuple[EpochStats, ...]
    notes: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(e) for e in self.epochs]

    def to_table(self) -> str:
        lines = [
            f"from {self.source}, for {self.target}: {self.recipe}",
            f"fake-quantized: the weights of {self.quantized_weights} layers, the inputs of {self.quantized_inputs}"
            + (", and the output" if self.output_quantized else ""),
            format_table(self.rows()),
            f"checkpoint: {self.output} (export: nin-export --weights {self.output} --precision int8 ...)",
        ]
        return "\n".join(lines + list(self.notes))


def run_qat(
    config: QatConfig, *, on_epoch: Callable[[EpochStats], None] | None = None, fake_quant: bool = True
) -> QatReport:
    """Fine-tune ``config.weights`` for ``epochs`` under the fake quantization of the INT8 recipe the
    options choose, and write ``output`` (atomically): a nin-train checkpoint with a ``qat`` record.

    ``fake_quant`` False runs the same fine-tune in plain FP32 and writes no ``qat`` record: the control
    that ``benchmarks/qat.py`` compares QAT with (what the fine-tune alone changes)."""
    config.validate()
    recipe = config.recipe()
    data, card = nin_source(config.weights, "nin-qat", "fine-tunes")
    model = build(card)
    load_state_checked(model, extract_state_dict(data, config.weights), config.weights)
    size = config.input_size or card.input_size
    card = dataclasses.replace(card, input_size=size)
    spec = fake_quant_plan(model, recipe, size)

    def attach(fresh: nn.Module) -> None:
        FakeQuant(fresh, spec)

    tuned, result = fine_tune(
        FineTune.of(config, config.epochs),
        model,
        card,
        data,
        recipe={"init_from": config.weights, "output": config.output},
        on_epoch=on_epoch,
        prepare=attach if fake_quant else None,
    )
    save(config.output, {**tuned, QAT_KEY: qat_record(recipe, config)} if fake_quant else tuned)
    return QatReport(
        output=config.output,
        source=config.weights,
        recipe=recipe.describe(),
        target=recipe.target,
        quantized_weights=len(spec.weights),
        quantized_inputs=len(spec.inputs),
        output_quantized=spec.output,
        epochs=result.history,
        notes=tuple(n for n in result.notes if n.startswith("warning:")),
    )
