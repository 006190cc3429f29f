"""Where a model's time goes, node by node, from onnxruntime's own profiler.

The profiler records every node's kernel time, the provider that ran it and the shapes it saw;
:func:`profile_nodes` runs timed inferences after a warm-up, sums each node's time and joins it with
the node's multiply-accumulates (from those shapes, so it also covers the nodes onnxruntime fused),
giving the achieved GFLOP/s of each node. ``nin-bench --profile`` and ``nin-inspect`` use it.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core.errors import ConfigError, ModelFileError
from .core.report import Report, format_table
from .session import ModelSource, RuntimeConfig, load_session

Shape = tuple[int, ...]
# Where the weight (or the right-hand matrix) sits among a node's inputs.
_CONV_WEIGHT = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3, "NhwcFusedConv": 1}
_MATMUL_LEFT = {"MatMul": 0, "Gemm": 0, "FusedMatMul": 0, "FusedGemm": 0, "MatMulInteger": 0, "QLinearMatMul": 0}


def node_macs(op: str, inputs: list[Shape], outputs: list[Shape]) -> int | None:
    """Multiply-accumulates of one node from its shapes: convolutions and matrix products, else None.

    A convolution makes every output element from ``C_in/groups x kh x kw`` products (the weight's
    shape after its first axis); a matrix product from ``K`` (the left operand's last axis).
    """
    if not outputs or not outputs[0]:
        return None
    out = math.prod(outputs[0])
    if op in _CONV_WEIGHT and len(inputs) > _CONV_WEIGHT[op]:
        return out * math.prod(inputs[_CONV_WEIGHT[op]][1:])
    if op in _MATMUL_LEFT and inputs and inputs[0]:
        return out * inputs[0][-1]
    return None


@dataclass(frozen=True)
class NodeTime:
    """One node's mean kernel time per inference, and what it achieved."""

    node: str
    op: str
    provider: str
    ms: float
    share: float
    macs: int | None
    gflop_s: float | None


@dataclass(frozen=True)
class NodeProfileReport(Report):
    """Per-node times of one model at one batch size, slowest first."""

    model: str
    provider: str
    batch_size: int
    runs: int
    total_ms: float
    results: tuple[NodeTime, ...]

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.results]

    def to_table(self) -> str:
        head = (
            f"{self.model} on {self.provider}, batch {self.batch_size}: "
            f"{self.total_ms:.3f} ms of node time per run ({self.runs} runs)"
        )
        return head + "\n" + format_table(self.rows())

    def placement(self) -> dict[str, int]:
        """How many nodes each execution provider ran."""
        counts: dict[str, int] = defaultdict(int)
        for r in self.results:
            counts[r.provider] += 1
        return dict(counts)


def _shapes(entries: object) -> list[Shape]:
    # The profiler writes shapes as [{"float": [1, 96, 54, 54]}, ...], one dict per input or output.
    if not isinstance(entries, list):
        return []
    return [tuple(int(d) for d in next(iter(e.values()), [])) for e in entries if isinstance(e, dict)]


def summarize_trace(events: list[dict], runs: int) -> list[NodeTime]:
    """Mean time per inference of each node in an onnxruntime profile trace, slowest first."""
    total: dict[str, float] = defaultdict(float)
    info: dict[str, tuple[str, str, int | None]] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        args = ev.get("args", {})
        node = ev["name"][: -len("_kernel_time")]
        total[node] += ev.get("dur", 0) / 1e3
        op = args.get("op_name", "?")
        macs = node_macs(op, _shapes(args.get("input_type_shape")), _shapes(args.get("output_type_shape")))
        info[node] = (op, args.get("provider", "?"), macs)
    grand = sum(total.values()) or 1.0
    rows = []
    for node, ms in total.items():
        op, provider, macs = info[node]
        per_run = ms / runs
        gflop_s = 2 * macs / (per_run * 1e6) if macs and per_run > 0 else None
        rows.append(NodeTime(node, op, provider, per_run, ms / grand, macs, gflop_s))
    return sorted(rows, key=lambda r: -r.ms)


def profile_nodes(
    model: str, *, provider: str = "cpu", batch_size: int = 1, runs: int = 20, warmup: int = 5
) -> NodeProfileReport:
    """Profile ``runs`` inferences of ``model`` at ``batch_size`` on ``provider`` (after ``warmup``).

    The session is planned as :class:`~nin_edge.runtime.Classifier` plans it, so every provider
    (OpenVINO included) and its errors are the same.
    """
    if batch_size <= 0 or runs <= 0 or warmup < 0:
        raise ConfigError(f"batch size and runs must be positive and warm-up >= 0, got {batch_size}, {runs}, {warmup}")
    if not Path(model).is_file():
        raise ModelFileError(f"model file '{model}' does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_session(ModelSource(model), RuntimeConfig(provider=provider), profile_prefix=f"{tmp}/profile")
        session = loaded.session
        inputs = session.get_inputs()
        if len(inputs) != 1 or not all(isinstance(d, int) for d in inputs[0].shape[1:]):
            described = "; ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise ModelFileError(
                "profiling feeds one image input with fixed dimensions after the batch; "
                f"model '{model}' has {described}"
            )
        inp = inputs[0]
        x = np.random.default_rng(0).random((batch_size, *inp.shape[1:]), dtype=np.float32)
        for _ in range(warmup + runs):
            session.run(None, {inp.name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    # Count only the last ``runs`` runs: the first ones pick kernels and allocate memory.
    starts = sorted(ev["ts"] for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    first = starts[-runs] if len(starts) >= runs else 0
    timed = [ev for ev in events if ev.get("ts", 0) >= first]
    rows = summarize_trace(timed, runs)
    return NodeProfileReport(
        model=model,
        provider=session.get_providers()[0],
        batch_size=batch_size,
        runs=runs,
        total_ms=sum(r.ms for r in rows),
        results=tuple(rows),
    )
