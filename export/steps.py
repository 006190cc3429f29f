"""The export steps: plain keyword-only functions, each returning a frozen result dataclass.

``export_onnx`` -> ``simplify`` -> ``with_metadata`` -> ``check_graph`` -> ``check_parity``;
:func:`nin_edge.export.pipeline.run_export` chains them for the command line. The model passes
from step to step in memory (an ``onnx.ModelProto``); only the finished file is written, once.
"""

from __future__ import annotations

import collections
import io
import os
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import torch
from nin_edge.models import ZooModel
from nin_edge.runtime.core.digest import graph_digest
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.core.metadata import ModelMetadata
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_table
from nin_edge.runtime.providers import CPU
from nin_edge.runtime.session import plain_session

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"

# The TorchScript exporter writes initializers as graph inputs below opset 9, which would give the
# model inputs other than the image; above its own maximum it only warns and writes a graph it
# does not support. So the range we accept is the one it handles cleanly.
MIN_OPSET = 9
MAX_OPSET = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)

_FORBIDDEN_AFTER_SIMPLIFY = ("Dropout", "Identity")


def check_opset(opset: int) -> None:
    """Raise :class:`ConfigError` unless the installed torch can export ``opset`` cleanly."""
    if not is_whole_number(opset, minimum=MIN_OPSET, maximum=MAX_OPSET):
        raise ConfigError(
            f"opset {opset!r} is not supported by torch {torch.__version__}'s exporter; "
            f"choose one from {MIN_OPSET} to {MAX_OPSET}"
        )


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Count of each op type in the main graph, most frequent first."""
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def batch_dim(model: onnx.ModelProto) -> tuple[str, str]:
    """The first axis of the graph's input and output: its symbolic name or its fixed value."""

    def first(value_info: onnx.ValueInfoProto) -> str:
        dims = value_info.type.tensor_type.shape.dim
        if not dims:
            return ""
        return dims[0].dim_param or str(dims[0].dim_value)

    return first(model.graph.input[0]), first(model.graph.output[0])


@dataclass(frozen=True)
class OnnxExport(Report):
    """An exported graph before simplification."""

    proto: onnx.ModelProto = field(repr=False, metadata={"report": False})
    opset: int
    exporter: str
    nodes: int
    seconds: float


def export_onnx(
    *,
    model: ZooModel,
    opset: int = 17,
    input_size: int | None = None,
) -> OnnxExport:
    """Export ``model`` in eval mode, in memory, with a symbolic batch axis named ``batch``.

    We use the TorchScript exporter (``dynamo=False``) with ``dynamic_axes``: the dynamo exporter
    specialises a batch of 1 unless given ``dynamic_shapes``, and asked for opset 17 it builds
    opset 18 and, for NiN, fails to convert down (on the ReduceMean of the global pool), leaving
    opset 18 and an external ``.onnx.data`` file without a word. The TorchScript exporter writes
    the requested opset into one file; we then prove the opset and the symbolic batch.
    """
    check_opset(opset)
    size = model.input_size if input_size is None else input_size
    model.check_input_size(size)
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    # A batch of 2, not 1, so that no size-1 axis can be folded into a broadcast during tracing.
    dummy = torch.zeros(2, model.in_channels, size, size)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The exporter's deprecation notice is about its default, which we override on purpose.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model,
                (dummy,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    written = onnx.load_from_string(buffer.getvalue())
    found = next((o.version for o in written.opset_import if o.domain in ("", "ai.onnx")), None)
    if found != opset:
        raise CheckFailedError(f"asked for opset {opset}, but the exporter wrote opset {found}")
    return OnnxExport(
        proto=written,
        opset=opset,
        exporter=f"torch.onnx TorchScript (torch {torch.__version__})",
        nodes=len(written.graph.node),
        seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class SimplifyResult(Report):
    """What onnxsim did to the graph."""

    proto: onnx.ModelProto = field(repr=False, metadata={"report": False})
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    seconds: float


def simplify(*, model: onnx.ModelProto) -> SimplifyResult:
    """Simplify ``model`` with onnxsim (into a new proto), keeping the batch axis symbolic.

    No input shape is forced, so onnxsim keeps ``batch`` symbolic; :func:`check_graph` proves it.
    """
    import onnxsim  # heavy import, needed only here

    start = time.perf_counter()
    before = model
    simplified, ok = onnxsim.simplify(before)
    if not ok:
        raise CheckFailedError("onnxsim could not validate the simplified model against the original")
    return SimplifyResult(
        proto=simplified,
        nodes_before=len(before.graph.node),
        nodes_after=len(simplified.graph.node),
        ops_before=op_histogram(before),
        ops_after=op_histogram(simplified),
        seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class ReshapeResult(Report):
    """How many ``Flatten`` nodes became ``Reshape``."""

    proto: onnx.ModelProto = field(repr=False, metadata={"report": False})
    replaced: int


def flatten_to_reshape(*, model: onnx.ModelProto) -> ReshapeResult:
    """Replace each ``Flatten(axis=1)`` by ``Reshape(x, [0, -1])`` (into a new proto).

    Both give (N, everything else). Mobile execution providers take Reshape but not Flatten
    (onnxruntime's usability checker: CoreML's MLProgram EP runs 28 of NiN's 29 nodes with
    Flatten), so with Reshape one partition covers the whole graph. The parity check that follows
    in the pipeline proves the outputs did not change.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    replaced = 0
    for k, node in enumerate(list(graph.node)):
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if node.op_type != "Flatten" or node.domain not in ("", "ai.onnx") or axis != 1:
            continue
        shape_name = f"{node.name or node.output[0]}_shape"
        graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, -1], dtype=np.int64), shape_name))
        reshape = onnx.helper.make_node("Reshape", [node.input[0], shape_name], list(node.output), name=node.name)
        graph.node.remove(node)
        graph.node.insert(k, reshape)
        replaced += 1
    return ReshapeResult(proto=out, replaced=replaced)


@dataclass(frozen=True)
class GraphCheck(Report):
    """The invariants a finished model satisfies."""

    opset: int
    batch_input: str
    batch_output: str
    nodes: int
    ops: dict[str, int]


def check_graph(*, model: onnx.ModelProto, opset: int, simplified: bool = True) -> GraphCheck:
    """Run ``onnx.checker`` with ``full_check`` and prove our invariants, or raise CheckFailedError.

    Invariants: the opset asked for, a symbolic ``batch`` axis on input and output, one input and
    one output with our names, and (after simplification) no Dropout or Identity node.
    """
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise CheckFailedError(f"onnx.checker rejected the model: {str(exc).splitlines()[0]}") from None
    found = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if found != opset:
        raise CheckFailedError(f"the model has opset {found}, expected {opset}")
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise CheckFailedError(f"the model's inputs and outputs are {names}, expected (['input'], ['logits'])")
    batch_in, batch_out = batch_dim(model)
    if (batch_in, batch_out) != (BATCH_AXIS, BATCH_AXIS):
        raise CheckFailedError(
            f"the batch axis is not symbolic: input has {batch_in!r}, output {batch_out!r}, expected 'batch'"
        )
    ops = op_histogram(model)
    leftover = [op for op in _FORBIDDEN_AFTER_SIMPLIFY if op in ops]
    if simplified and leftover:
        raise CheckFailedError(f"simplification left {', '.join(leftover)} nodes in the graph")
    return GraphCheck(opset=found, batch_input=batch_in, batch_output=batch_out, nodes=len(model.graph.node), ops=ops)


def with_metadata(*, model: onnx.ModelProto, metadata: ModelMetadata) -> onnx.ModelProto:
    """A copy of ``model`` carrying ``metadata`` as ``metadata_props`` and a readable ``doc_string``.

    The metadata's ``graph_sha256`` is set here, from the graph as serialised, so the runtime can
    tell a damaged or altered file (the metadata lies outside the graph, so it does not change it).
    """
    labelled = onnx.ModelProto()
    labelled.CopyFrom(model)
    model = labelled
    metadata = replace(metadata, graph_sha256=graph_digest(model.SerializeToString()))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata.to_props())
    pre = metadata.preprocessing
    model.doc_string = (
        f"{metadata.model} image classifier exported by nin-edge {metadata.toolkit_version} "
        f"(opset {metadata.opset}, {metadata.precision}). Input '{metadata.input_name}': float32 "
        f"{metadata.layout} (batch, {metadata.in_channels}, {metadata.input_size}, {metadata.input_size}); "
        f"output '{metadata.output_name}': logits over {len(metadata.labels)} classes "
        f"({', '.join(metadata.labels)}). Preprocessing: {pre.color}, {pre.resize} resize to "
        f"{metadata.input_size}x{metadata.input_size}, pixel*{pre.scale:.6g}, mean {list(pre.mean)}, "
        f"std {list(pre.std)}. Weights: {metadata.weights}."
    )
    model.producer_name = "nin-edge"
    model.producer_version = metadata.toolkit_version
    return model


def serialize_checked(*, model: onnx.ModelProto) -> bytes:
    """The model's bytes, after proving that their graph matches the digest in its metadata."""
    data = model.SerializeToString()
    recorded = {p.key: p.value for p in model.metadata_props}.get("graph_sha256")
    if recorded != graph_digest(data):
        raise CheckFailedError("the serialised graph does not match the digest recorded in its metadata")
    return data


@dataclass(frozen=True)
class ParityRow:
    """ONNX Runtime against PyTorch at one batch size."""

    batch_size: int
    max_abs_err: float
    max_rel_err: float
    top1_agreement: float
    passed: bool


@dataclass(frozen=True)
class ParityResult(Report):
    """ONNX Runtime's logits against PyTorch's on the same random images.

    ``max_rel_err`` is the largest absolute difference divided by the largest PyTorch logit
    magnitude of that batch, so near-zero logits do not blow it up.
    """

    atol: float
    provider: str
    batches: tuple[ParityRow, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.batches)

    @property
    def max_abs_err(self) -> float:
        return max(r.max_abs_err for r in self.batches)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "passed": self.passed, "max_abs_err": self.max_abs_err}

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.batches]

    def to_table(self) -> str:
        return format_table(self.rows())


def check_parity(
    *,
    model: ZooModel,
    onnx_model: bytes | str | os.PathLike,
    batch_sizes: tuple[int, ...] = (1, 2, 7),
    atol: float = 1e-4,
    input_size: int | None = None,
    seed: int = 0,
) -> ParityResult:
    """Compare onnxruntime (CPU, full graph optimisation) with PyTorch at each batch size.

    Inputs are uniform in [0, 1), the range the preprocessing produces. A batch passes when its
    largest absolute logit difference is at most ``atol``; the caller decides what failing means.
    """
    size = model.input_size if input_size is None else input_size
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = plain_session(source)
    rng = np.random.default_rng(seed)
    rows = []
    was_training = model.training
    model.eval()
    try:
        for n in batch_sizes:
            x = rng.random((n, model.in_channels, size, size), dtype=np.float32)
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            if got.shape != ref.shape:
                raise CheckFailedError(
                    f"onnxruntime gave logits of shape {got.shape} at batch {n}, expected {ref.shape}"
                )
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            max_abs = float(diff.max())
            scale = float(np.abs(ref).max())
            rows.append(
                ParityRow(
                    batch_size=n,
                    max_abs_err=max_abs,
                    max_rel_err=max_abs / scale if scale > 0 else max_abs,
                    top1_agreement=float(np.mean(got.argmax(1) == ref.argmax(1))),
                    passed=bool(np.isfinite(got).all() and max_abs <= atol),
                )
            )
    finally:
        model.train(was_training)
    return ParityResult(atol=atol, provider=CPU, batches=tuple(rows))
