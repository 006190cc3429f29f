"""nin-export --precision int8|fp16: node types, symbolic batch, metadata, agreement and refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from nin_edge.export import ExportConfig, run_export
from nin_edge.export import pipeline as pipeline_module
from nin_edge.export.calibration import load_images
from nin_edge.export.cli import main as export_cli
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError, InputError
from onnx import TensorProto

from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow

SIZE = 72


@pytest.fixture(scope="module")
def he_ckpt(tmp_path_factory):
    import torch

    from tests.conftest import he_init_nin

    path = tmp_path_factory.mktemp("he") / "nin72.pt"
    torch.save(he_init_nin(SIZE).state_dict(), path)
    return path


def export(tmp_path, he_ckpt, **options):
    config = ExportConfig(
        weights=str(he_ckpt),
        input_size=SIZE,
        check_batch_sizes=(1,),
        eval_size=40,
        output=str(tmp_path / f"nin-{options.get('precision', 'fp32')}.onnx"),
        **options,
    )
    return run_export(config)


@pytest.fixture(scope="module")
def int8(tmp_path_factory, he_ckpt, tiny_fashion):
    folder = tmp_path_factory.mktemp("int8")
    return export(
        folder,
        he_ckpt,
        precision="int8",
        calibration_data=str(tiny_fashion),
        calibration_size=32,
        eval_data=str(tiny_fashion),
        min_agreement=0.0,
    )


def inputs_of(model: onnx.ModelProto) -> list[tuple[str, int]]:
    return [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input]


def test_int8_graph_and_metadata(int8):
    model = onnx.load(int8.output)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = {i.name: i for i in model.graph.initializer}
    int8_weights = [w for w in weights.values() if w.data_type == TensorProto.INT8 and len(w.dims) == 4]
    fp32_weights = [w for w in weights.values() if w.data_type == TensorProto.FLOAT and len(w.dims) == 4]
    # Every CPU class's recipe keeps NiN's last block (three convolutions) in FP32.
    assert len(int8_weights) == 9 and len(fp32_weights) == 3
    assert any(
        len(w.dims) == 1 and w.dims[0] == 96 for w in weights.values() if w.data_type == TensorProto.FLOAT
    )  # per-channel scales
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert inputs_of(model) == [("input", TensorProto.FLOAT)]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == "int8" and "Fashion-MNIST train split" in props["calibration"]
    assert "minmax" in props["calibration"] and f"target {props['int8_target']}" in props["calibration"]
    assert props["int8_target"] in ("x86-avx2", "x86-vnni", "arm64")
    assert json.loads(props["int8_recipe"])["fp32_layers"] == "last-block"


def test_int8_comparison_is_real(int8, tiny_fashion):
    rep = int8.reduced
    assert rep.images == 40 and "test split" in rep.eval_images
    int8_clf = Classifier(int8.output, "cpu")
    images = load_images(str(tiny_fashion), size=SIZE, channels=1, limit=40, split="test")
    int8_logits = int8_clf.logits(images.images)
    assert int8_clf.describe().precision == "int8"
    assert rep.accuracy_reduced == pytest.approx(float(np.mean(int8_logits.argmax(1) == images.labels)))
    assert 0 <= rep.top1_agreement <= 1 and rep.accuracy_fp32 is not None
    assert rep.accuracy_drop_points == pytest.approx(100 * (rep.accuracy_fp32 - rep.accuracy_reduced))
    assert "accuracy_drop_points" in json.loads(int8.render("json"))["reduced"]
    assert rep.max_abs_err >= rep.mean_abs_err > 0
    assert rep.reduced_bytes < 0.3 * rep.fp32_bytes
    assert set(rep.latency_ms["int8"]) == {"1", "8"} and all(v > 0 for v in rep.latency_ms["fp32"].values())


def test_fp16_keeps_float32_io(tmp_path, he_ckpt):
    summary = export(tmp_path, he_ckpt, precision="fp16")
    model = onnx.load(summary.output)
    assert inputs_of(model) == [("input", TensorProto.FLOAT)]
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    conv_weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert conv_weights and all(w.data_type == TensorProto.FLOAT16 for w in conv_weights)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert summary.reduced.precision == "fp16" and "synthetic" in summary.reduced.eval_images
    assert summary.reduced.top1_agreement > 0.9 and summary.reduced.max_abs_err < 0.05
    clf = Classifier(summary.output, "cpu")
    assert clf.describe().precision == "fp16"
    assert clf.logits(np.zeros((3, 1, SIZE, SIZE), np.float32)).shape == (3, 10)


def test_int8_for_tensorrt_is_symmetric_s8s8(tmp_path, he_ckpt):
    summary = export(
        tmp_path,
        he_ckpt,
        precision="int8",
        calibration_data="synthetic",
        calibration_size=16,
        int8_target="tensorrt",
        min_agreement=0.0,
    )
    model = onnx.load(summary.output)
    # Activations and weights; biases are int32 by design.
    zero_points = {i.name: i for i in model.graph.initializer if "zero_point" in i.name and "bias" not in i.name}
    assert zero_points and all(z.data_type == TensorProto.INT8 for z in zero_points.values())
    assert all(not np.any(onnx.numpy_helper.to_array(z)) for z in zero_points.values())  # symmetric: all zero
    props = {p.key: p.value for p in model.metadata_props}
    assert "synthetic" in props["calibration"] and "target tensorrt" in props["calibration"]
    assert props["int8_target"] == "tensorrt" and json.loads(props["int8_recipe"])["types"] == "s8s8"


def test_cli_table_reports_the_comparison(tmp_path, he_ckpt):
    result = run_cli(
        export_cli,
        [
            "--weights",
            he_ckpt,
            "--input-size",
            SIZE,
            "--precision",
            "int8",
            "--calibration-data",
            "synthetic",
            "--calibration-size",
            16,
            "--eval-size",
            16,
            "--min-agreement",
            0,
            "--output",
            tmp_path / "q.onnx",
            "--check-batch-sizes",
            1,
        ],
    )
    assert result.exit_code == 0, result.stderr
    for fragment in (
        "int8 against FP32",
        "top-1 agreement",
        "% of FP32",
        "latency batch 8",
        "calibration      minmax on synthetic",
    ):
        assert fragment in result.stdout
    as_json = run_cli(
        export_cli,
        [
            "--weights",
            he_ckpt,
            "--input-size",
            SIZE,
            "--precision",
            "fp16",
            "--eval-size",
            8,
            "--output",
            tmp_path / "h.onnx",
            "--check-batch-sizes",
            1,
            "--format",
            "json",
        ],
    )
    assert json.loads(as_json.stdout)["reduced"]["precision"] == "fp16"


def test_low_agreement_fails_the_export(tmp_path, he_ckpt, monkeypatch):
    real = pipeline_module.compare_precision

    def low(**kw):
        from dataclasses import replace

        return replace(real(**kw), top1_agreement=0.5)

    monkeypatch.setattr(pipeline_module, "compare_precision", low)
    out = tmp_path / "nin-fp16.onnx"
    with pytest.raises(
        CheckFailedError, match=r"fp16 model agrees with FP32 on 50.00% of 40 images, below --min-agreement 0.99"
    ):
        export(tmp_path, he_ckpt, precision="fp16")
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "int8"], "INT8 needs calibration images: --calibration-data DIR"),
        (["--precision", "int8", "--calibration-data", "nowhere"], "calibration data 'nowhere' does not exist"),
        (["--precision", "int8", "--calibration-data", "synthetic", "--opset", 11], "needs opset 13 or newer, got 11"),
        (
            ["--precision", "int8", "--calibration-data", "synthetic", "--calibration-size", 0],
            "calibration size must be a positive",
        ),
        (["--min-agreement", 2], "min agreement must be in [0, 1]"),
    ],
)
def test_refusals(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli(export_cli, ["--input-size", SIZE, *args]), message)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_and_mis_sized_calibration_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no IDX files, images or .npy arrays"):
        load_images(str(empty), size=SIZE, channels=1, limit=4)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(InputError, match=r"expected float32 \(N,1,72,72\), got \(2, 1, 28, 28\)"):
        load_images(str(tmp_path / "wrong.npy"), size=SIZE, channels=1, limit=4)
    (tmp_path / "broken.npy").write_bytes(b"nope")
    with pytest.raises(InputError, match="cannot read calibration array"):
        load_images(str(tmp_path / "broken.npy"), size=SIZE, channels=1, limit=4)
    np.save(tmp_path / "raw.npy", np.zeros((5, 28, 28), np.uint8))
    assert load_images(str(tmp_path / "raw.npy"), size=SIZE, channels=1, limit=3).images.shape == (3, 1, SIZE, SIZE)
