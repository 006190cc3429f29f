"""``nin-inspect``: what an ONNX model (or a deploy bundle) is, like ``polygraphy inspect model``.

Inputs and outputs, metadata, opset, the op histogram, parameters and MACs per layer and in total
(shapes inferred at batch 1), file size and sha256, the weight-digest check, and how many nodes each
execution provider of this machine takes (from one profiled run on that provider).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from nin_edge.runtime.bundle import MANIFEST, open_bundle
from nin_edge.runtime.core.digest import graph_digest
from nin_edge.runtime.core.errors import ModelFileError, NinEdgeError
from nin_edge.runtime.core.files import check_memory, kind_of
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.int8 import int8_fit
from nin_edge.runtime.profiling import node_macs, profile_nodes
from nin_edge.runtime.providers import ProviderKind, parse_provider, usable_plugins

#: protobuf cannot serialise or parse a message over 2 GiB.
MAX_PROTOBUF_BYTES = 2**31 - 1


@dataclass(frozen=True)
class Layer:
    """One node of the graph: its output shape at batch 1, the weights it holds and its MACs."""

    node: str
    op: str
    output_shape: str
    params: int
    macs: int


@dataclass(frozen=True)
class ModelInspection(Report):
    """Everything ``nin-inspect`` says about one ONNX file."""

    path: str
    size_bytes: int
    sha256: str
    opset: int
    producer: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    metadata: dict[str, str]
    ops: dict[str, int]
    #: The model's weights and biases, as many as its float model has (the card's count).
    params: int
    macs: int
    weights_check: str
    placement: dict[str, str]
    layers: tuple[Layer, ...] = field(default=())
    #: A quantized model's scales and zero points: values it holds beyond its weights, not counted in ``params``.
    quantization_values: int = 0
    #: INT8 only: the machine class the model was tuned for against this CPU's, with any warning.
    int8_target: str = ""

    def rows(self) -> list[dict]:
        return [dict(layer.__dict__) for layer in self.layers]

    def _quantization_note(self) -> str:
        if not self.quantization_values:
            return ""
        return f" (and {self.quantization_values:,} INT8 scales and zero points, which the float model has not)"

    def to_table(self) -> str:
        shown_meta = {k: (v if len(v) <= 90 else v[:87] + "...") for k, v in self.metadata.items()}
        head = format_pairs(
            [
                ("file", self.path),
                ("size", f"{self.size_bytes:,} bytes"),
                ("sha256", self.sha256),
                ("opset", self.opset),
                ("producer", self.producer),
                ("inputs", "; ".join(self.inputs)),
                ("outputs", "; ".join(self.outputs)),
                ("parameters", f"{self.params:,}" + self._quantization_note()),
                ("MACs per image", f"{self.macs:,}"),
                ("weights", self.weights_check),
                *([("int8 target", self.int8_target)] if self.int8_target else []),
                ("ops", ", ".join(f"{op} x{n}" for op, n in sorted(self.ops.items(), key=lambda kv: -kv[1]))),
                *((f"provider {p}", v) for p, v in self.placement.items()),
                *((f"metadata {k}", v) for k, v in shown_meta.items()),
            ]
        )
        return head + ("\n\n" + format_table(self.rows()) if self.layers else "")


@dataclass(frozen=True)
class FolderInspection(Report):
    """A folder of models (a deploy bundle): its files and each model's inspection."""

    path: str
    files: dict[str, int]
    models: tuple[ModelInspection, ...]
    #: What the bundle check found ("" for a folder without a manifest).
    bundle: str = ""

    def rows(self) -> list[dict]:
        return [{"file": name, "size_bytes": size} for name, size in self.files.items()]

    def to_table(self) -> str:
        head = [format_pairs([("bundle", self.bundle)])] if self.bundle else []
        parts = head + [format_table(self.rows())] + [m.to_table() for m in self.models]
        return "\n\n".join(parts)


def _text(value: str | bytes) -> str:
    # protobuf hands a string field that is not valid UTF-8 (a damaged file) back as bytes.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _dims(value: onnx.ValueInfoProto) -> tuple[Any, ...]:
    return tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)


def _describe(value: onnx.ValueInfoProto) -> str:
    elem = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return (
        f"{_text(value.name)}: {elem} ({', '.join(_text(d) if isinstance(d, bytes) else str(d) for d in _dims(value))})"
    )


def layer_table(model: onnx.ModelProto) -> tuple[Layer, ...]:
    """Each node's output shape, parameters and MACs, shapes inferred with every symbolic axis at 1."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param or not d.dim_value:
                d.dim_value = 1  # setting the value clears the symbolic name
    inferred = onnx.shape_inference.infer_shapes(fixed)
    g = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for value in (*g.input, *g.value_info, *g.output):
        dims = _dims(value)
        if all(isinstance(d, int) and d > 0 for d in dims):
            shapes[value.name] = tuple(int(d) for d in dims)
    sizes = {t.name: math.prod(t.dims) for t in g.initializer if t.data_type != onnx.TensorProto.INT64}
    shapes.update({t.name: tuple(t.dims) for t in g.initializer})
    layers = []
    for node in g.node:
        ins = [shapes.get(name, ()) for name in node.input]
        outs = [shapes.get(name, ()) for name in node.output]
        layers.append(
            Layer(
                node=node.name or node.output[0],
                op=node.op_type,
                output_shape="x".join(map(str, outs[0])) if outs and outs[0] else "?",
                params=sum(sizes.get(name, 0) for name in node.input),
                macs=node_macs(node.op_type, ins, outs) or 0,
            )
        )
    return tuple(layers)


def _weights_check(data: bytes, metadata: dict[str, str], path: Path) -> str:
    recorded = metadata.get("graph_sha256")
    if not recorded:
        return "no digest recorded (not written by nin-export)"
    actual = graph_digest(data, str(path), path.parent)
    return "digest matches" if actual == recorded else f"DIGEST MISMATCH: recorded {recorded[:12]}, file {actual[:12]}"


def _int8_target(metadata: dict[str, str]) -> str:
    """The INT8 target's fit to this CPU, and the warning the runtime would give ("" if not INT8)."""
    if metadata.get("precision") != "int8":
        return ""
    try:
        recipe = json.loads(metadata.get("int8_recipe", "{}"))
    except ValueError:
        recipe = None
    line, warning = int8_fit(metadata.get("int8_target", ""), recipe if isinstance(recipe, dict) else {})
    return f"{line}. WARNING: {warning}" if warning else line


def _placement(path: Path, providers: list[str]) -> dict[str, str]:
    result = {}
    for provider in providers:
        if parse_provider(provider).kind is ProviderKind.OTHER:
            result[provider] = "not measured (nin-edge does not plan sessions on it)"
            continue
        try:
            counts = profile_nodes(str(path), provider=provider, batch_size=1, runs=1, warmup=0).placement()
        except Exception as exc:  # noqa: BLE001  onnxruntime raises its own types; the report says why
            if (
                not isinstance(exc, (NinEdgeError, RuntimeError))
                and type(exc).__module__.split(".")[0] != "onnxruntime"
            ):
                raise
            result[provider] = f"cannot run the model: {str(exc).splitlines()[0][:200]}"
            continue
        total = sum(counts.values())
        taken = counts.get(provider, 0)
        result[provider] = (
            f"takes all {total} nodes"
            if taken == total
            else f"takes {taken} of {total} nodes; "
            + ", ".join(f"{p} runs {n}" for p, n in counts.items() if p != provider)
        )
    return result


def inspect_model(path: str | Path, *, layers: bool = True, providers: list[str] | None = None) -> ModelInspection:
    """Inspect one ONNX file; ``providers`` defaults to this machine's execution providers."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "missing":
        raise ModelFileError(f"model file '{path}' does not exist")
    if kind != "a regular file":
        link = f" (a link to '{path.resolve()}')" if path.is_symlink() else ""
        raise ModelFileError(f"'{path}'{link} is {kind}, not a model file")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"'{path}' is empty (0 bytes): not an ONNX model")
    if size > MAX_PROTOBUF_BYTES:
        raise ModelFileError(
            f"'{path}' is {size:,} bytes; an ONNX file holds at most 2 GiB (protobuf's limit; larger models keep "
            "their weights as external data): not an ONNX model"
        )
    # The bytes, the parsed model and the copy shape inference works on are in memory at once.
    check_memory(3 * size, f"inspecting '{path}' ({size:,} bytes)")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"'{path}' is not a readable ONNX model: {str(exc).splitlines()[0][:200]}") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFileError(f"'{path}' holds no graph (protobuf that parses, but no ONNX model)")
    g = model.graph
    init = {t.name for t in g.initializer}
    metadata = {_text(p.key): _text(p.value) for p in model.metadata_props}
    table = layer_table(model)
    if providers is None:
        # The OpenVINO plugin is listed by onnxruntime only once registered, and only with a device.
        providers = [p for p in ort.get_available_providers() if parse_provider(p).kind is not ProviderKind.REMOTE]
        providers += usable_plugins(ort)
    # int64 initializers are shapes and indices (a Reshape's target), not weights; a QDQ model's scales and
    # zero points (inputs 1 and 2 of its (De)QuantizeLinear nodes) are counted apart, so that one model has
    # one parameter count in every precision.
    qdq = {name for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for name in n.input[1:3]}
    tensors = [t for t in g.initializer if t.data_type != onnx.TensorProto.INT64]
    weights = [t for t in tensors if t.name not in qdq]
    quantization = [t for t in tensors if t.name in qdq]
    return ModelInspection(
        path=str(path),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0),
        producer=f"{_text(model.producer_name)} {_text(model.producer_version)}".strip(),
        inputs=tuple(_describe(v) for v in g.input if v.name not in init),
        outputs=tuple(_describe(v) for v in g.output),
        metadata=metadata,
        ops=dict(Counter(_text(n.op_type) for n in g.node)),
        params=sum(math.prod(t.dims) for t in weights),
        quantization_values=sum(math.prod(t.dims) for t in quantization),
        macs=sum(layer.macs for layer in table),
        weights_check=_weights_check(data, metadata, path),
        placement=_placement(path, providers),
        layers=table if layers else (),
        int8_target=_int8_target(metadata),
    )


def inspect_path(path: str | Path, *, layers: bool = True) -> ModelInspection | FolderInspection:
    """Inspect an ONNX file, or every ``.onnx`` file of a folder (a deploy bundle) and list its files.

    A folder with a ``manifest.json`` is read as a bundle and checked first, as ``nin-infer`` would
    (format version, every file's sha256): one it would refuse is refused here too.
    """
    path = Path(path)
    if path.is_dir():
        bundle = ""
        if (path / MANIFEST).exists():
            manifest = open_bundle(path).manifest
            bundle = f"nin-edge bundle, format {manifest['format_version']}: every file matches {MANIFEST}"
        entries = sorted(path.iterdir())
        for entry in entries:
            if entry.name.endswith(".onnx") and kind_of(entry) != "a regular file":
                inspect_model(entry)  # says what it is instead
        files = {p.name: p.stat().st_size for p in entries if p.is_file()}
        models = tuple(inspect_model(path / n, layers=layers) for n in files if n.endswith(".onnx"))
        if not models:
            raise ModelFileError(f"folder '{path}' holds no .onnx model")
        return FolderInspection(path=str(path), files=files, models=models, bundle=bundle)
    return inspect_model(path, layers=layers)
