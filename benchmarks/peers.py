"""Peer runtimes for ``nin-bench --peers``: other inference engines timed on the same inputs as nin-edge's rows.

Each peer is one :class:`Peer` in :data:`PEERS`: its name (the ``--peers`` word), the pip extra that installs it,
an availability probe, the row precisions it offers (each mapped to the nin-edge export precision it is compared
with), and ``build(model, batch, precision, threads)``, which converts the model once and returns the function
that is timed with the file the peer loads (its row's ``file_bytes``). None of them is in the runtime install;
each has its own extra (``peer-openvino``, ``peer-executorch``, ``peer-litert``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from nin_edge.runtime.core.errors import ConfigError, NinEdgeError
from nin_edge.runtime.core.files import atomic_output

if TYPE_CHECKING:
    import torch

#: Logits of a float32 NCHW batch, as a float32 array.
PeerRun = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PeerBuilt:
    """What a peer's build returns: the timed function and the file it runs (an edge app ships that file)."""

    run: PeerRun
    artifact: Path


class PeerUnsupportedError(NinEdgeError):
    """The peer cannot run this configuration here (its row says why instead of a timing)."""


@dataclass(frozen=True)
class PeerModel:
    """What a peer converts: the registered model, its nin-edge ONNX export of the row's precision, and
    the PyTorch module with the very weights that export holds."""

    name: str
    onnx: Path
    module: Callable[[], torch.nn.Module]
    input_shape: tuple[int, int, int]
    work_dir: Path

    def calibration(self, batch: int, batches: int = 4) -> list[np.ndarray]:
        """Calibration batches for a peer's own INT8 recipe: uniform images, as nin-edge's synthetic
        calibration, at the exported batch size (other seeds than the timed input)."""
        shape = (batch, *self.input_shape)
        return [np.random.default_rng(100 + i).random(shape, dtype=np.float32) for i in range(batches)]


@dataclass(frozen=True)
class Peer:
    """One peer runtime of the registry."""

    name: str
    extra: str
    modules: tuple[str, ...]
    #: Row precision -> nin-edge export precision it starts from (and is measured beside).
    precisions: Mapping[str, str]
    build: Callable[[PeerModel, int, str, int], PeerBuilt]
    #: What the ``provider`` column says (the peer's backend or delegate).
    provider: str

    def check_installed(self) -> None:
        """Raise a one-line :class:`ConfigError` naming the extra when a module of the peer is missing."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"peer {self.name!r} is not installed (no module {missing[0]!r}); "
                f"install it with: pip install 'nin-edge[{self.extra}]'"
            )

    def row_precisions(self, export_precisions: tuple[str, ...]) -> list[str]:
        """The row precisions this peer measures beside nin-edge rows of ``export_precisions``."""
        return [p for p, source in self.precisions.items() if source in export_precisions]


def _openvino(model: PeerModel, batch: int, precision: str, threads: int) -> PeerBuilt:
    """OpenVINO native on nin-edge's own ONNX file (FP32, or the INT8 QDQ model), reshaped to ``batch``."""
    import openvino as ov

    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise PeerUnsupportedError("this CPU has no bf16 arithmetic that OpenVINO uses (no AVX512_BF16 or AMX)")
    net = core.read_model(str(model.onnx))
    net.reshape([batch, *model.input_shape])
    # f32 is asked for explicitly: OpenVINO's default on a bf16-capable CPU is bf16, which is not FP32's answer.
    hint = "bf16" if precision == "bf16" else "f32"
    compiled = core.compile_model(
        net,
        "CPU",
        {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return np.asarray(request.get_output_tensor(0).data)

    # OpenVINO reads nin-edge's own ONNX file: that file is what an app would ship.
    return PeerBuilt(run, model.onnx)


def _executorch(model: PeerModel, batch: int, precision: str, threads: int) -> PeerBuilt:
    """ExecuTorch with its XNNPACK delegate: ``torch.export`` at ``batch`` -> ``.pte``; INT8 through the
    PT2E ``XNNPACKQuantizer`` (symmetric, per channel), calibrated at the exported batch size."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    net = model.module().eval()
    example = (torch.zeros(batch, *model.input_shape),)
    if precision == "int8":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(torch.export.export(net, example).module(), quantizer)
        with torch.no_grad():
            for images in model.calibration(batch):
                prepared(torch.from_numpy(images))
        net = convert_pt2e(prepared)
    program = to_edge_transform_and_lower(torch.export.export(net, example), partitioner=[XnnpackPartitioner()])
    path = model.work_dir / f"{model.name}-{precision}-b{batch}.pte"
    with atomic_output(path) as tmp:
        tmp.write_bytes(program.to_executorch().buffer)
    method = Runtime.get().load_program(path).load_method("forward")
    from executorch.extension.pybindings import portable_lib

    # XNNPACK's pool is process-wide and sized to the cores; resetting it is safe while nothing executes.
    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(x)])[0].numpy()

    return PeerBuilt(run, path)


def _litert(model: PeerModel, batch: int, precision: str, threads: int) -> PeerBuilt:
    """LiteRT (XNNPACK delegate, on by default): ``litert_torch.convert`` at ``batch`` -> ``.tflite``."""
    import litert_torch
    import torch
    from ai_edge_litert.interpreter import Interpreter

    path = model.work_dir / f"{model.name}-{precision}-b{batch}.tflite"
    # The converter prints its progress on stdout, where nin-bench writes its JSON or CSV report.
    with contextlib.redirect_stdout(sys.stderr), atomic_output(path) as tmp:
        litert_torch.convert(model.module().eval(), (torch.zeros(batch, *model.input_shape),)).export(str(tmp))
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    sink = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(sink)

    return PeerBuilt(run, path)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer(
            "openvino",
            "peer-openvino",
            ("openvino",),
            {"fp32": "fp32", "bf16": "fp32", "int8": "int8"},
            _openvino,
            "openvino-cpu",
        ),
        Peer(
            "executorch",
            "peer-executorch",
            ("executorch", "torchao"),
            {"fp32": "fp32", "int8": "int8"},
            _executorch,
            "xnnpack",
        ),
        Peer("litert", "peer-litert", ("litert_torch", "ai_edge_litert"), {"fp32": "fp32"}, _litert, "xnnpack"),
    )
}


def resolve_peers(names: tuple[str, ...]) -> list[Peer]:
    """The peers named by ``--peers``, each checked to be installed; a one-line error otherwise."""
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ConfigError(f"unknown peer {unknown[0]!r}; known peers: {', '.join(PEERS)}")
    peers = [PEERS[n] for n in names]
    for peer in peers:
        peer.check_installed()
    return peers
