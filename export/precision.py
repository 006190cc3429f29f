"""Reduced-precision variants of an exported model: INT8 (static, calibrated) and FP16.

INT8 uses onnxruntime's own quantizer (``quant_pre_process`` then ``quantize_static`` with
per-channel weights) fed by a ``CalibrationDataReader`` over real images; FP16 uses the converter
that ships inside onnxruntime (``onnxruntime.transformers.float16``) with float32 inputs and
outputs kept, so apps feed the same arrays. Both keep the symbolic batch.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from nin_edge.models.data import load_split
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.cpu import cpu_flags
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError, InputError
from nin_edge.runtime.core.files import load_npy
from nin_edge.runtime.core.metadata import ModelMetadata, Preprocessing
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report
from nin_edge.runtime.preprocess import preprocess_image, read_image
from onnxruntime.quantization import CalibrationDataReader

from .steps import with_metadata


class CalibrationMethod(Choice):
    """How INT8 activation ranges are chosen from the calibration images."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Int8Target(Choice):
    """Which runtime an INT8 graph is laid out for: U8S8 QDQ for CPUs, symmetric S8S8 QDQ for TensorRT."""

    CPU = "cpu"
    TENSORRT = "tensorrt"


class ReduceRange(Choice):
    """7-bit weights: ``auto`` uses them only on CPUs without VNNI (AVX2 saturation)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Per-channel QDQ needs opset 13 (the axis attribute of QuantizeLinear).
MIN_INT8_OPSET = 13


@dataclass(frozen=True)
class CalibrationSet:
    """Model-ready calibration (or evaluation) images, their labels if known, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str


def load_images(
    source: str,
    *,
    size: int,
    channels: int,
    limit: int,
    split: str = "train",
    seed: int = 0,
    pre: Preprocessing | None = None,
    skip: int = 0,
) -> CalibrationSet:
    """Images for calibration or evaluation, preprocessed exactly as the runtime does.

    ``source`` is ``synthetic`` (uniform noise, flagged as such), a folder with Fashion-MNIST IDX
    files (``split`` of it), a folder of image files, or a ``.npy`` file / folder of ``.npy`` batches
    (uint8: one (H,W) image or an (N,H,W[,C]) stack; or model-ready float32 (N,C,H,W) tensors,
    which must lie in the range the preprocessing produces). ``skip`` leaves out the first images,
    so an evaluation can use images the calibration did not see.
    """
    pre = pre or Preprocessing()
    if not is_whole_number(limit, minimum=1):
        raise ConfigError(f"calibration size must be a positive whole number, got {limit!r}")
    if source == "synthetic":
        rng = np.random.default_rng(seed)
        images = rng.random((limit, channels, size, size), dtype=np.float32)
        return CalibrationSet(images, None, f"synthetic: {limit} uniform-noise images, seed {seed}")
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"calibration data '{source}' does not exist; give a folder of IDX files, images or .npy, or 'synthetic'"
        )

    def prep(raw: list[np.ndarray]) -> np.ndarray:
        return np.stack(
            [preprocess_image(im, channels=channels, size=size, pre=pre, where=f"'{source}'") for im in raw]
        )

    if path.is_dir() and any(path.glob("*-idx3-ubyte*")) or (path / "FashionMNIST" / "raw").is_dir():
        data = load_split(path, split)
        images, labels = data.images[skip : skip + limit], data.labels[skip : skip + limit]
        _enough(images, skip, source)
        first = f"images {skip + 1}-{skip + len(images)}" if skip else f"first {len(images)} images"
        return CalibrationSet(
            prep(list(images)), labels, f"Fashion-MNIST {split} split of '{source}', {first}" + _held_out(skip)
        )
    npys = [path] if path.suffix == ".npy" else sorted(path.glob("*.npy")) if path.is_dir() else []
    if npys:
        low, high = _preprocessed_range(pre)
        batches = []
        for f in npys:
            arr = load_npy(f, "calibration array")
            if arr.dtype == np.float32:
                if arr.ndim != 4 or arr.shape[1:] != (channels, size, size):
                    raise InputError(
                        f"calibration array '{f}': expected float32 (N,{channels},{size},{size}), got "
                        f"{tuple(arr.shape)}"
                    )
                _check_range(arr, low, high, f)
                batches.append(arr)
            elif arr.dtype == np.uint8:
                # A uint8 .npy is one (H,W) image or a stack: (N,H,W) or (N,H,W,C).
                batches.append(prep([arr] if arr.ndim == 2 else list(arr)))
            else:
                raise InputError(f"calibration array '{f}': expected uint8 images or float32 tensors, got {arr.dtype}")
        images = np.concatenate(batches)[skip : skip + limit]
        _enough(images, skip, source)
        return CalibrationSet(images, None, f"{len(images)} images from .npy in '{source}'" + _held_out(skip))
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []
    if not files:
        raise ConfigError(f"calibration data '{source}' holds no IDX files, images or .npy arrays")
    chosen = files[skip : skip + limit]
    _enough(chosen, skip, source)
    images = prep([read_image(f) for f in chosen])
    return CalibrationSet(images, None, f"{len(images)} image files from '{source}'" + _held_out(skip))


def _held_out(skip: int) -> str:
    return f", held out (after the first {skip}, which calibrated)" if skip else ""


def _enough(images: Sequence | np.ndarray, skip: int, source: str) -> None:
    if len(images) == 0:
        raise ConfigError(
            f"'{source}' has no images after the first {skip} used for calibration; give --eval-data, "
            "or more images, so that agreement is measured on images the calibration did not see"
        )


def _preprocessed_range(pre: Preprocessing) -> tuple[float, float]:
    """The smallest and largest value the preprocessing makes of 8-bit pixels (all channels)."""
    ends = [(p * pre.scale - m) / s for p in (0, 255) for m, s in zip(pre.mean, pre.std, strict=True)]
    return min(ends), max(ends)


def _check_range(arr: np.ndarray, low: float, high: float, where: Path) -> None:
    """Refuse float tensors far outside what the preprocessing produces (e.g. pixels left in 0-255)."""
    slack = 0.1 * (high - low)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < low - slack or hi > high + slack:
        raise InputError(
            f"calibration array '{where}' holds values from {lo:.4g} to {hi:.4g}, but the model's preprocessing "
            f"produces {low:.4g} to {high:.4g}; pass uint8 images, or float32 tensors preprocessed as the model's "
            "metadata says"
        )


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


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI) int8 dot-product instructions."""
    flags = cpu_flags()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def resolve_reduce_range(setting: str, target: str) -> tuple[bool, str]:
    """Whether to quantize weights to 7 bits, and why.

    AVX2 CPUs without VNNI multiply u8 x s8 pairs with VPMADDUBSW, whose 16-bit sums saturate with
    full 8-bit weights (measured: 3.5x the logit error); 7-bit weights avoid it. CPUs with VNNI
    have no such problem, and the lost bit costs agreement (measured on NiN: 98.9% with, 99.4%
    without). TensorRT uses full-range symmetric int8.
    """
    ReduceRange.check(setting, "reduce range")
    if setting != "auto":
        return setting == "on", f"reduce_range {setting}"
    if target == "tensorrt":
        return False, "reduce_range off (auto: TensorRT target)"
    if cpu_has_vnni():
        return False, "reduce_range off (auto: this CPU has VNNI)"
    return True, "reduce_range on (auto: no VNNI on this CPU, avoiding AVX2 saturation)"


QUANT_FORMATS = ("qdq", "qoperator")
ACTIVATION_TYPES = ("uint8", "int8")


def quantize_int8(
    *,
    fp32_path: str | os.PathLike,
    output: str | os.PathLike,
    calibration: CalibrationSet,
    method: str = "minmax",
    target: str = "cpu",
    input_name: str = "input",
    quant_format: str = "qdq",
    activation: str | None = None,
    reduce_range: str = "auto",
) -> QuantizeResult:
    """Static INT8 quantization of ``fp32_path`` into ``output`` with per-channel weights.

    ``target="cpu"``: QDQ with unsigned activations and signed weights (U8S8); ``reduce_range``
    "auto" uses 7-bit weights only on CPUs without VNNI (see :func:`resolve_reduce_range`).
    ``target="tensorrt"``: QDQ with symmetric signed activations and weights (S8S8),
    what TensorRT needs. ``quant_format`` and ``activation`` override the preset (for comparisons).
    """
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process

    CalibrationMethod.check(method, "calibration method")
    Int8Target.check(target, "int8 target")
    if quant_format not in QUANT_FORMATS or (activation is not None and activation not in ACTIVATION_TYPES):
        raise ConfigError(f"quant format must be one of {QUANT_FORMATS} and activation one of {ACTIVATION_TYPES}")
    start = time.perf_counter()
    trt = target == "tensorrt"
    activation = activation or ("int8" if trt else "uint8")
    if trt and (activation != "int8" or quant_format != "qdq"):
        raise ConfigError("the tensorrt target needs QDQ with int8 activations")
    act_type = QuantType.QInt8 if activation == "int8" else QuantType.QUInt8
    use_reduce_range, range_note = resolve_reduce_range(reduce_range, target)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        _quantize_static(
            model_input=str(prepared),
            model_output=str(output),
            # The histogram calibrators (entropy, percentile) stack per-batch arrays and need equal shapes.
            calibration_data_reader=_Reader(calibration.images, input_name, batch=16 if method == "minmax" else 1),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=act_type,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=use_reduce_range,
            calibrate_method={
                CalibrationMethod.MINMAX.value: OrtCalibration.MinMax,
                CalibrationMethod.ENTROPY.value: OrtCalibration.Entropy,
                CalibrationMethod.PERCENTILE.value: OrtCalibration.Percentile,
            }[method],
            extra_options={"ActivationSymmetric": trt, "WeightSymmetric": True},
        )
    _relabel(Path(output), f"{method} on {calibration.source}")
    return QuantizeResult(
        path=str(output),
        target=target,
        quant_format=quant_format,
        activation_type=activation + (" symmetric" if trt else ""),
        reduce_range=range_note,
        weight_type="int8 per-channel",
        calibration=calibration.source,
        method=method,
        seconds=time.perf_counter() - start,
    )


def _relabel(path: Path, calibration: str) -> None:
    """The quantizer copies the FP32 model's metadata, whose graph digest no longer fits the new
    graph; write the INT8 model's own (a model without nin-edge metadata is left as it is)."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    if "labels" not in props:
        return
    metadata = replace(ModelMetadata.from_props(props, str(path)), precision="int8", calibration=calibration)
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
