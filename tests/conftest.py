"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner, Result
from nin_edge.runtime.core.metadata import ModelMetadata, Preprocessing
from onnx import TensorProto, helper


def run_cli(command, args: list[str]) -> Result:
    """Invoke a click command with stdout and stderr kept apart."""
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str, progress: bool = False) -> str:
    """The command failed with exit 1, one ``error:`` line on stderr naming ``fragments``, no traceback.

    With ``progress`` the error line may follow progress lines; it must still be the last line.
    """
    assert result.exit_code == 1, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    if progress:
        lines = lines[-1:]
    else:
        assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def he_init_nin(input_size: int = 224, seed: int = 1):
    """A NiN with He-initialised weights: unlike PyTorch's default init, its logits depend clearly
    on the image, so tests that compare outputs of different inputs can tell them apart."""
    from nin_edge.models import create_model

    torch.manual_seed(seed)
    model = create_model("nin", input_size=input_size)
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            torch.nn.init.uniform_(layer.bias, 0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def nin_checkpoint(tmp_path_factory):
    """A He-initialised NiN saved as a bare state_dict."""
    path = tmp_path_factory.mktemp("ckpt") / "nin_he.pt"
    torch.save(he_init_nin().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_nin_path():
    """The checked-in NiN-shaped model (tests/data/nin_tiny.onnx): runtime tests need no export."""
    return Path(__file__).parent / "data" / "nin_tiny.onnx"


@pytest.fixture(scope="session")
def nin_path(nin_checkpoint):
    """That NiN exported at 224x224 by the library, shared by the runtime tests."""
    from nin_edge.export import ExportConfig, run_export

    out = nin_checkpoint.with_suffix(".onnx")
    run_export(ExportConfig(output=str(out), weights=str(nin_checkpoint), check_batch_sizes=(1,)))
    return out


def write_idx(path, array, gz: bool = False) -> None:
    """Write ``array`` (uint8) as an IDX file: images (N,H,W) get magic 0x803, labels (N,) 0x801."""
    import gzip as _gzip

    import numpy as _np

    array = _np.asarray(array, dtype=_np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(_gzip.compress(data) if gz else data)


@pytest.fixture(scope="session")
def tiny_fashion(tmp_path_factory):
    """A tiny Fashion-MNIST-like data set: 96 train and 40 test images whose class is learnable
    (each class a bright bar at its own rows), in the standard IDX files, the train files gzipped."""
    import numpy as _np

    root = tmp_path_factory.mktemp("fashion")
    rng = _np.random.default_rng(0)

    def make(n):
        labels = _np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28)).astype(_np.uint8)
        for i, y in enumerate(labels):
            images[i, 2 * y + 4 : 2 * y + 7, 4:24] = 230
        return images, labels

    train_x, train_y = make(96)
    test_x, test_y = make(40)
    write_idx(root / "train-images-idx3-ubyte.gz", train_x, gz=True)
    write_idx(root / "train-labels-idx1-ubyte.gz", train_y, gz=True)
    write_idx(root / "t10k-images-idx3-ubyte", test_x)
    write_idx(root / "t10k-labels-idx1-ubyte", test_y)
    return root


def foreign_model(path, shape=("N", 1, 8, 8), classes=3):
    """A tiny ONNX classifier written by hand, without nin-edge metadata: GlobalAveragePool + Gemm."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])
    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [shape[1], classes], np.arange(shape[1] * classes, dtype=np.float32).tolist()
    )
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
    ]
    graph = helper.make_graph(nodes, "foreign", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def flip_weights(src, dst):
    """Copy ``src`` with 4 KB of one weight tensor's bytes inverted (the file still parses)."""
    data = bytearray(src.read_bytes())
    weights = max((i.raw_data for i in onnx.load(str(src)).graph.initializer), key=len)
    start = data.find(weights)
    assert start > 0
    n = min(4096, len(weights))
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    dst.write_bytes(bytes(data))
    return dst


def two_class_model(path: Path) -> Path:
    """A 2-class RGB model with nin-edge metadata and a per-channel mean and std: (N,3,16,16) -> 2 logits."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [1.5, -1.0, 0.5, 2.0, -2.0, 0.25])
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "two", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    pre = Preprocessing(color="rgb", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    meta = ModelMetadata(model="two", input_size=16, in_channels=3, labels=("cat", "dog"), opset=17, preprocessing=pre)
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, str(path))
    return path
