"""Reduced-precision variants of an exported model: INT8 (static, calibrated) and FP16.

INT8 uses onnxruntime's own quantizer (``quant_pre_process`` then ``quantize_static`` with
per-channel weights) fed by a ``CalibrationDataReader`` over real images, following the measured
recipe of the machine class it is for (:data:`RECIPES`: types, 7-bit weights, layers kept FP32),
which the model records (``int8_target``, ``int8_recipe``) for the runtime; FP16 uses the converter
that ships inside onnxruntime (``onnxruntime.transformers.float16``) with float32 inputs and
outputs kept, so apps feed the same arrays. Both keep the symbolic batch.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.core.metadata import ModelMetadata
from nin_edge.runtime.core.report import Report
from nin_edge.runtime.int8 import Int8Target, cpu_class, saturates
from nin_edge.runtime.providers import ProviderKind, parse_provider
from nin_edge.runtime.session import plain_session
from onnxruntime.quantization import CalibrationDataReader

from .calibration import CalibrationSet
from .inspect import layer_table
from .steps import with_metadata


class CalibrationMethod(Choice):
    """How INT8 activation ranges are chosen from the calibration images."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Int8Types(Choice):
    """Activation and weight types: ``auto`` takes the target's recipe (see :data:`RECIPES`)."""

    AUTO = "auto"
    U8S8 = "u8s8"
    U8U8 = "u8u8"
    S8S8 = "s8s8"


class Fp32Layers(Choice):
    """Layers left in FP32: ``auto`` takes the recipe's; ``last-block`` is every Conv/Gemm/MatMul
    after the graph's last pooling (NiN: its last mlpconv block, three convolutions, 0.1% of the
    MACs); ``ends`` adds the first convolution."""

    AUTO = "auto"
    NONE = "none"
    LAST_BLOCK = "last-block"
    ENDS = "ends"


class ReduceRange(Choice):
    """7-bit weights: ``auto`` takes the recipe's (on only for x86 CPUs without VNNI)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


# Per-channel QDQ needs opset 13 (the axis attribute of QuantizeLinear).
MIN_INT8_OPSET = 13


class _Reader(CalibrationDataReader):
    """Feeds the calibration images to onnxruntime's calibrator in small batches."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = 16) -> None:
        self.images, self.input_name, self.batch = images, input_name, batch
        self._it: Iterator[dict] | None = None

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = (
                {self.input_name: self.images[i : i + self.batch]} for i in range(0, len(self.images), self.batch)
            )
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


@dataclass(frozen=True)
class Int8Recipe:
    """How a model is quantized for one machine class, and the measurement behind the choice."""

    target: str
    types: str
    reduce_range: bool
    fp32_layers: str
    why: str = ""
    #: Weights from nin-qat: how they were fine-tuned (``epochs``, ``lr``) and the recipe they were
    #: fine-tuned for (``trained_for``, this one's unless the export chose another); None otherwise.
    qat: Mapping[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        """The recipe as the model's metadata (``int8_recipe``) and a bundle's manifest record it."""
        qat = {} if self.qat is None else {"qat": dict(self.qat)}
        return {"types": self.types, "reduce_range": self.reduce_range, "fp32_layers": self.fp32_layers, **qat}

    def describe(self) -> str:
        """One line: ``U8S8, reduce_range off, FP32 kept: last-block``."""
        return (
            f"{self.types.upper()}, reduce_range {'on' if self.reduce_range else 'off'}, FP32 kept: {self.fp32_layers}"
        )


#: The default recipe per machine class: one home for the measured choice (README, "INT8 recipes").
RECIPES: dict[str, Int8Recipe] = {
    Int8Target.X86_AVX2.value: Int8Recipe(
        Int8Target.X86_AVX2.value,
        "u8s8",
        True,
        "last-block",
        "AMD Zen3 AVX2, 2026-11-30, shipped NiN at 112: 99.4% agreement, 1.84x FP32 at batch 32 (all INT8: 98.9%); "
        "7-bit weights avoid VPMADDUBSW's 16-bit saturation",
    ),
    Int8Target.X86_VNNI.value: Int8Recipe(
        Int8Target.X86_VNNI.value,
        "u8s8",
        False,
        "last-block",
        "AMD Zen4 AVX-512 VNNI, 2026-11-30, shipped NiN at 112: 99.48% agreement on 10,000 test images "
        "(all INT8: 99.43%; 7-bit weights: 98.9% on 1,000), 3.2-3.4x FP32 at batch 32",
    ),
    # Not measured (no ARM machine here): ARM64's dot-product instructions accumulate in 32 bits, so
    # full 8-bit weights are safe, as with VNNI, whose recipe this follows.
    Int8Target.ARM64.value: Int8Recipe(
        Int8Target.ARM64.value, "u8s8", False, "last-block", "not measured: follows x86-vnni (no saturation)"
    ),
    # TensorRT reads symmetric S8S8 QDQ and chooses each layer's precision itself.
    Int8Target.TENSORRT.value: Int8Recipe(
        Int8Target.TENSORRT.value, "s8s8", False, "none", "TensorRT needs symmetric S8S8 QDQ"
    ),
}
#: Former ``--int8-target`` spellings, still accepted for one release with a warning.
OLD_TARGETS = {"cpu": Int8Target.AUTO.value}


def resolve_target(target: str, *, flags: Iterable[str] | None = None, machine: str | None = None) -> str:
    """The machine class ``target`` names: ``auto`` is this machine's (from its CPU flags)."""
    if target in OLD_TARGETS:
        warnings.warn(
            f"int8 target {target!r} is now {OLD_TARGETS[target]!r}; the old spelling goes in the next release",
            FutureWarning,
            stacklevel=3,
        )
        target = OLD_TARGETS[target]
    Int8Target.check(target, "int8 target")
    return cpu_class(flags, machine) if target == Int8Target.AUTO.value else target


def choose_recipe(
    target: str = "auto",
    *,
    types: str = "auto",
    reduce_range: str = "auto",
    fp32_layers: str = "auto",
    flags: Iterable[str] | None = None,
    machine: str | None = None,
) -> Int8Recipe:
    """The recipe for ``target`` (``auto``: this machine's class), with any option given overriding it."""
    Int8Types.check(types, "int8 types")
    ReduceRange.check(reduce_range, "int8 reduce range")
    Fp32Layers.check(fp32_layers, "int8 fp32 layers")
    base = RECIPES[resolve_target(target, flags=flags, machine=machine)]
    chosen = replace(
        base,
        types=base.types if types == "auto" else types,
        reduce_range=base.reduce_range if reduce_range == "auto" else reduce_range == "on",
        fp32_layers=base.fp32_layers if fp32_layers == "auto" else fp32_layers,
    )
    if chosen.target == Int8Target.TENSORRT.value and chosen.types != "s8s8":
        raise ConfigError(f"the tensorrt target needs s8s8 (symmetric int8 activations), got --int8-types {types}")
    if chosen != base:
        chosen = replace(chosen, why=f"{base.describe()} is {base.target}'s default; changed by the options given")
    return chosen


#: A nin-qat checkpoint's record of the recipe its weights were fine-tuned for (target, types,
#: reduce_range, fp32_layers) and how (epochs, lr).
QAT_KEY = "qat"


def qat_recipe(checkpoint: Mapping[str, Any], path: str) -> Int8Recipe | None:
    """The recipe a nin-qat checkpoint's weights were fine-tuned for (its ``qat`` field saying how);
    None for any other checkpoint."""
    record = checkpoint.get(QAT_KEY)
    if record is None:
        return None
    try:
        if not isinstance(record, Mapping):
            raise TypeError(f"a {type(record).__name__}, not a dict")
        recipe = choose_recipe(
            str(record["target"]),
            types=str(record["types"]),
            reduce_range="on" if record["reduce_range"] is True else "off",
            fp32_layers=str(record["fp32_layers"]),
        )
        how = {"epochs": int(record["epochs"]), "lr": float(record["lr"])}
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(
            f"'{path}' has a broken {QAT_KEY} record ({type(exc).__name__}: {exc}); run nin-qat again"
        ) from None
    line = f"QAT weights: fine-tuned {how['epochs']} epoch(s) at lr {how['lr']:g} under this recipe's fake quantization"
    return replace(recipe, why=line, qat={**how, "trained_for": f"{recipe.target}: {recipe.describe()}"})


def recipe_for_weights(chosen: Int8Recipe, trained: Int8Recipe | None, options_given: bool) -> Int8Recipe:
    """The recipe an INT8 export of QAT weights (``trained``: the recipe they were fine-tuned for, None
    for other weights) uses: ``trained`` unless ``options_given`` chose ``chosen``, which is then said to
    differ (never silently)."""
    if trained is None:
        return chosen
    if not options_given or replace(chosen, why="", qat=None) == replace(trained, why="", qat=None):
        return trained
    return replace(
        chosen,
        why=f"{chosen.why}; note: the QAT weights were fine-tuned for {trained.target}'s {trained.describe()}, "
        "not this recipe",
        qat=trained.qat,
    )


#: The nodes whose precision a recipe decides (the rest follow them), and the ones that end a block.
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
_POOL_OPS = ("MaxPool", "AveragePool")


def fp32_nodes(model: onnx.ModelProto, layers: str) -> tuple[str, ...]:
    """The names of the compute nodes :class:`Fp32Layers` ``layers`` keeps in FP32, in graph order."""
    nodes = list(model.graph.node)
    compute = [i for i, n in enumerate(nodes) if n.op_type in COMPUTE_OPS]
    if layers == Fp32Layers.NONE.value or not compute:
        return ()
    pools = [i for i, n in enumerate(nodes) if n.op_type in _POOL_OPS]
    keep = [i for i in compute if pools and i > pools[-1]]
    if layers == Fp32Layers.ENDS.value and compute[0] not in keep:
        keep.insert(0, compute[0])
    return tuple(nodes[i].name for i in keep)


@dataclass(frozen=True)
class QuantizeResult(Report):
    """What the INT8 conversion did."""

    path: str
    target: str
    quant_format: str
    activation_type: str
    weight_type: str
    reduce_range: str
    calibration: str
    method: str
    seconds: float
    recipe: str = ""
    fp32_nodes: tuple[str, ...] = ()
    #: Share of the model's multiply-accumulates left in FP32.
    fp32_mac_share: float = 0.0

    def metadata_fields(self, recipe: Int8Recipe) -> dict[str, Any]:
        """The INT8 fields of the model's metadata (what the runtime checks against its CPU)."""
        return {"int8_target": self.target, "int8_recipe": {**recipe.metadata(), "fp32_nodes": list(self.fp32_nodes)}}


QUANT_FORMATS = ("qdq", "qoperator")
_QUANT_TYPES = {"u8s8": ("QUInt8", "QInt8"), "u8u8": ("QUInt8", "QUInt8"), "s8s8": ("QInt8", "QInt8")}


def quantize_int8(
    *,
    fp32_path: str | os.PathLike,
    output: str | os.PathLike,
    calibration: CalibrationSet,
    method: str = "minmax",
    recipe: Int8Recipe | None = None,
    input_name: str = "input",
    quant_format: str = "qdq",
    keep_fp32: Sequence[str] | None = None,
) -> QuantizeResult:
    """Static INT8 quantization of ``fp32_path`` into ``output`` with per-channel weights.

    ``recipe`` (default: :func:`choose_recipe` for this machine) sets the activation/weight types,
    7-bit weights and the layers kept in FP32; the TensorRT recipe also makes the activations
    symmetric. ``quant_format`` ``qoperator`` is for comparisons only; ``keep_fp32`` names the
    nodes to keep FP32 instead of the recipe's rule (for a per-layer sensitivity pass).
    """
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process

    CalibrationMethod.check(method, "calibration method")
    if quant_format not in QUANT_FORMATS:
        raise ConfigError(f"quant format must be one of {QUANT_FORMATS}, got {quant_format!r}")
    recipe = recipe or choose_recipe()
    start = time.perf_counter()
    trt = recipe.target == Int8Target.TENSORRT.value
    act, weight = (getattr(QuantType, t) for t in _QUANT_TYPES[recipe.types])
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        prepared_model = onnx.load(str(prepared))
        keep = fp32_nodes(prepared_model, recipe.fp32_layers) if keep_fp32 is None else tuple(keep_fp32)
        unknown = sorted(set(keep) - {n.name for n in prepared_model.graph.node})
        if unknown:
            raise ConfigError(f"no node named {unknown[0]!r} to keep in FP32 in '{fp32_path}'")
        macs = {layer.node: layer.macs for layer in layer_table(prepared_model)}
        _quantize_static(
            model_input=str(prepared),
            model_output=str(output),
            # The histogram calibrators (entropy, percentile) stack per-batch arrays and need equal shapes.
            calibration_data_reader=_Reader(calibration.images, input_name, batch=16 if method == "minmax" else 1),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=act,
            weight_type=weight,
            per_channel=True,
            reduce_range=recipe.reduce_range,
            nodes_to_exclude=list(keep),
            calibrate_method={
                CalibrationMethod.MINMAX.value: OrtCalibration.MinMax,
                CalibrationMethod.ENTROPY.value: OrtCalibration.Entropy,
                CalibrationMethod.PERCENTILE.value: OrtCalibration.Percentile,
            }[method],
            extra_options={"ActivationSymmetric": trt, "WeightSymmetric": True},
        )
    total = sum(macs.values()) or 1
    result = QuantizeResult(
        path=str(output),
        target=recipe.target,
        quant_format=quant_format,
        activation_type=("int8" if recipe.types.startswith("s8") else "uint8") + (" symmetric" if trt else ""),
        reduce_range=f"reduce_range {'on' if recipe.reduce_range else 'off'}",
        weight_type=("uint8" if recipe.types == "u8u8" else "int8") + " per-channel",
        calibration=calibration.source,
        method=method,
        seconds=time.perf_counter() - start,
        recipe=recipe.describe(),
        fp32_nodes=keep,
        fp32_mac_share=sum(macs.get(n, 0) for n in keep) / total,
    )
    _relabel(Path(output), f"{method} on {calibration.source}", result.metadata_fields(recipe))
    return result


def gate_arithmetic(recipe: Int8Recipe, provider: str, cpu: str | None = None) -> tuple[bool, str]:
    """Which arithmetic the INT8 agreement gate measures a model made with ``recipe`` in, on ``provider``:
    ``(unfused, line)``; ``cpu`` is this machine's class (default: detected).

    For this CPU's own class or a GPU provider, the session's own kernels are the target's (for TensorRT,
    which picks each layer's precision itself, no CPU's are). For another CPU class they are not (an AVX2
    host saturates where arm64's dot products do not), so the gate runs the model with its Q/DQ nodes
    unfused (``plain_session(unfused_qdq=True)``): the quantized values with exact products, as a CPU
    whose integer sums do not saturate computes them.
    """
    cpu = cpu or cpu_class()
    if parse_provider(provider).kind is not ProviderKind.CPU:
        return False, f"{provider}'s INT8 kernels"
    if recipe.target == cpu:
        return False, f"this {cpu} CPU's own INT8 kernels (the target's)"
    if recipe.target == Int8Target.TENSORRT.value:  # no CPU stands in better: TensorRT picks each layer's precision
        return False, f"this {cpu} CPU's INT8 kernels (TensorRT runs the model its own way)"
    line = (
        f"Q/DQ unfused (float math on the quantized values), standing in for {recipe.target}'s integer kernels: "
        f"this {cpu} CPU's own INT8 kernels are not the target's"
    )
    if saturates(recipe.types, recipe.reduce_range, recipe.target):
        line += f"; {recipe.target}'s 16-bit saturation with these full 8-bit weights is not reproduced"
    return True, line


def unfused_logits(model: bytes, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The logits of the QDQ ``model`` (serialised) for model-ready ``images`` on onnxruntime's CPU
    provider with its Q/DQ nodes unfused (float math on the quantized values), in batches of ``batch``."""
    session = plain_session(model, unfused_qdq=True)
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    return np.concatenate(parts).astype(np.float32)


def gate_advice(
    *,
    recipe: Int8Recipe | None,
    calibration_size: int,
    method: str,
    agreement: float,
    labelled: bool,
    max_accuracy_drop: float | None = None,
) -> str:
    """What to try after a failed precision gate, naming the options (``recipe`` None: not INT8)."""
    tries = []
    if recipe is not None:
        other = []
        if recipe.fp32_layers != Fp32Layers.ENDS.value:
            other.append("--int8-fp32-layers ends (first conv and last block in FP32)")
        if recipe.types != Int8Types.U8U8.value and recipe.target != Int8Target.TENSORRT.value:
            other.append("--int8-types u8u8 (most precise, slower)")
        if other:
            tries.append(f"another recipe than {recipe.target}'s {recipe.describe()}: " + " or ".join(other))
        methods = [m for m in CalibrationMethod.values() if m != method]
        tries.append(
            f"more calibration data (--calibration-size {2 * calibration_size}, now {calibration_size}) or "
            f"--calibration-method {'|'.join(methods)}"
        )
    floor = max(0.0, int(agreement * 100) / 100)
    tries.append(f"a lower gate (--min-agreement {floor:g})")
    if max_accuracy_drop is not None:
        tries.append(f"a larger --max-accuracy-drop (now {max_accuracy_drop:g} points)")
    elif labelled:
        tries.append("--max-accuracy-drop POINTS to judge the accuracy drop on the labelled --eval-data instead")
    else:
        tries.append("labelled --eval-data with --max-accuracy-drop POINTS to judge the accuracy drop instead")
    return "Try " + "; ".join(tries)


def _relabel(path: Path, calibration: str, int8: dict[str, Any]) -> None:
    """The quantizer copies the FP32 model's metadata, whose graph digest no longer fits the new
    graph; write the INT8 model's own (a model without nin-edge metadata is left as it is)."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    if "labels" not in props:
        return
    metadata = replace(ModelMetadata.from_props(props, str(path)), precision="int8", calibration=calibration, **int8)
    onnx.save(with_metadata(model=model, metadata=metadata), str(path))


def _quantize_static(**kwargs) -> None:
    """onnxruntime's quantize_static, its failures turned into one clear error."""
    from onnxruntime.quantization import quantize_static

    try:
        quantize_static(**kwargs)
    except Exception as exc:  # the quantizer raises bare ValueError/RuntimeError from deep inside
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckFailedError(f"onnxruntime's INT8 quantizer failed: {first}") from None


def convert_fp16(*, model: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and compute, float32 input and output kept (so apps feed the same arrays)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    source = onnx.ModelProto()
    source.CopyFrom(model)  # the converter changes the graph it is given
    converted = OnnxModel(convert_float_to_float16(source, keep_io_types=True))
    # The converter appends the input Casts after the nodes that use them; ONNX wants them first.
    converted.topological_sort()
    return converted.model
