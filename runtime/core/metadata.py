"""The metadata nin-export writes into a model and the runtime reads back.

One schema on both sides: the exporter turns a :class:`ModelMetadata` into ONNX
``metadata_props`` (string pairs) and the runtime parses them with :meth:`ModelMetadata.from_props`.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ModelFileError


def toolkit_version() -> str:
    """The installed nin-edge version ("0+unknown" when run from a source tree that is not installed)."""
    from importlib import metadata as _dist  # imported here: it costs cold-start time and is rarely needed

    try:
        return _dist.version("nin-edge")
    except _dist.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Preprocessing:
    """How a raw image becomes the model's input tensor.

    ``resize`` is bilinear interpolation with half-pixel centres (PIL's BILINEAR and torch's
    ``interpolate(align_corners=False)`` agree on it when enlarging, which is the Fashion-MNIST case).
    The tensor is ``(pixel * scale - mean) / std`` per channel; mean 0 and std 1 mean "none".
    """

    color: str = "grayscale"
    resize: str = "bilinear"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        # A std of 0 or a NaN scale turns every image into NaN logits; refuse such metadata.
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"preprocessing scale must be a positive finite number, got {self.scale}")
        if not all(math.isfinite(s) and s > 0 for s in self.std) or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(
                f"preprocessing std must be positive and finite and mean finite, got std {list(self.std)}, "
                f"mean {list(self.mean)}"
            )


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about itself: its source, input contract, labels and preprocessing."""

    model: str
    input_size: int
    in_channels: int
    labels: tuple[str, ...]
    weights: str = "unknown"
    opset: int = 0
    precision: str = "fp32"
    input_name: str = "input"
    output_name: str = "logits"
    layout: str = "NCHW"
    calibration: str = ""
    #: sha256 of the graph (nodes and weights), checked by the runtime; empty in older files.
    graph_sha256: str = ""
    #: INT8 only: the machine class the model is tuned for (``x86-avx2``, ``x86-vnni``, ``arm64``,
    #: ``tensorrt``) and its recipe (types, reduce_range, FP32 layers); empty in older files.
    int8_target: str = ""
    int8_recipe: dict[str, Any] = field(default_factory=dict)
    #: The ``create_model`` options of the trained checkpoint's card (NiN's ``head``, a pruned NiN's
    #: per-block ``widths``), so that the file says which architecture it is; empty in older files.
    model_options: dict[str, Any] = field(default_factory=dict)
    toolkit_version: str = field(default_factory=toolkit_version)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` pairs (every value a string, structured ones as JSON)."""
        props = {}
        for key, value in asdict(self).items():
            props[key] = value if isinstance(value, str) else json.dumps(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> ModelMetadata:
        """Parse ``metadata_props``; a model without them was not written by nin-export."""
        missing = [k for k in ("model", "input_size", "in_channels", "labels") if k not in props]
        if missing:
            raise ModelFileError(
                f"model '{source}' has no nin-edge metadata ({', '.join(missing)} missing); "
                "export it with nin-export, or pass labels and input size explicitly"
            )
        try:
            pre = json.loads(props.get("preprocessing", "{}"))
            # Keys a file lacks take the dataclasses' own defaults, which are written only there.
            keys = (
                "weights",
                "precision",
                "input_name",
                "output_name",
                "layout",
                "calibration",
                "graph_sha256",
                "int8_target",
            )
            given: dict = {k: props[k] for k in keys if k in props}
            if "int8_recipe" in props:
                recipe = json.loads(props["int8_recipe"])
                if not isinstance(recipe, dict):
                    raise TypeError(f"int8_recipe must be a JSON object, got {type(recipe).__name__}")
                given["int8_recipe"] = recipe
            if "model_options" in props:
                options = json.loads(props["model_options"])
                if not isinstance(options, dict):
                    raise TypeError(f"model_options must be a JSON object, got {type(options).__name__}")
                given["model_options"] = options
            if "opset" in props:
                given["opset"] = int(json.loads(props["opset"]))
            return cls(
                model=props["model"],
                input_size=int(json.loads(props["input_size"])),
                in_channels=int(json.loads(props["in_channels"])),
                labels=_labels(json.loads(props["labels"])),
                # A file without the key was not written by any nin-edge version we know.
                toolkit_version=props.get("toolkit_version", "unknown"),
                preprocessing=Preprocessing(**_preprocessing_fields(pre)),
                **given,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"model '{source}' has unreadable nin-edge metadata: {exc}") from None


def _labels(value: object) -> tuple[str, ...]:
    # A JSON string is iterable too: "abcdefghij" must not become ten one-letter labels.
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise TypeError(f"labels must be a JSON list of strings, got {shown}")
    return check_labels(value, "labels")


def check_labels(value: object, what: str) -> tuple[str, ...]:
    """``value`` as class names: a list of distinct, non-empty, one-line strings, else a ``TypeError``
    or ``ValueError`` naming ``what`` and the first bad entry.

    A string is iterable too: "xy" must not become the labels x and y. A newline or other control
    character would split a line of labels.txt (Triton) or of a table in two; a lone surrogate is a
    name that was not valid UTF-8 and cannot be written to JSON or a terminal.
    """
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise TypeError(f"{what} must be a list of strings (one per class), got {shown}")
    for name in value:
        if not name.strip():
            raise ValueError(f"{what}: a class name is empty ({name!r}); each class needs a name")
        bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
        if bad is not None:
            kind = "a byte that is not UTF-8" if unicodedata.category(bad) == "Cs" else f"the control character {bad!r}"
            raise ValueError(
                f"{what}: the class name {ascii(name)} contains {kind}; rename the class "
                "(letters, digits, spaces and punctuation)"
            )
    repeated = sorted(name for name, n in Counter(value).items() if n > 1)
    if repeated:
        raise ValueError(
            f"{what}: the class(es) {', '.join(map(repr, repeated))} appear twice or more; names must differ"
        )
    return tuple(value)


def _preprocessing_fields(pre: dict) -> dict:
    """The preprocessing keys a file gives, converted to the field types."""
    if not isinstance(pre, dict):
        raise TypeError(f"preprocessing must be a JSON object, got {type(pre).__name__}")
    out: dict = {}
    for key in ("color", "resize"):
        if key in pre:
            out[key] = str(pre[key])
    if "scale" in pre:
        out["scale"] = float(pre["scale"])
    for key in ("mean", "std"):
        if key in pre:
            out[key] = tuple(float(x) for x in pre[key])
    return out
