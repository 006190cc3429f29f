"""nin-qat: fake quantization that computes what onnxruntime's INT8 model computes, a fine-tune that keeps the
checkpoint ordinary, and nin-export taking the recipe the weights were fine-tuned for."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.calibration import CalibrationSet
from nin_edge.export.cli import qat_main
from nin_edge.export.precision import QAT_KEY, choose_recipe, quantize_int8
from nin_edge.export.qat import QatConfig, fake_quant_plan, run_qat
from nin_edge.export.steps import export_onnx
from nin_edge.models import create_model, load_weights
from nin_edge.models.fake_quant import FakeQuant, FakeQuantSpec, RangeObserver, compute_layers, fake_quant_weight
from nin_edge.models.train import TrainConfig, train
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.errors import ConfigError
from onnx import numpy_helper

from tests.conftest import assert_one_line_error, he_init_nin, run_cli
from tests.test_datasets import make_folder

SIZE = 67  # NiN's smallest input keeps these runs fast
FAST = {"batch_size": 32, "workers": 0}


def _noise(n: int = 4, channels: int = 1) -> np.ndarray:
    return np.random.default_rng(0).random((n, channels, SIZE, SIZE), dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "types", "reduce_range"),
    [
        ("x86-vnni", "auto", "auto"),
        ("x86-avx2", "auto", "auto"),
        ("x86-vnni", "u8u8", "on"),
        ("tensorrt", "auto", "auto"),
    ],
)
def test_fake_quantized_weights_are_the_qdq_models_dequantized_initializers(target, types, reduce_range):
    model = he_init_nin(SIZE)
    recipe = choose_recipe(target, types=types, reduce_range=reduce_range)
    spec = fake_quant_plan(model, recipe, SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(export_onnx(model=model, input_size=SIZE).proto, str(fp32))
        quantize_int8(fp32_path=fp32, output=int8, calibration=CalibrationSet(_noise(), None, "noise"), recipe=recipe)
        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    names = [name for name, m in model.named_modules() if m in compute_layers(model)]
    assert spec.weights == tuple(range(9 if recipe.fp32_layers == "last-block" else 12))
    for index in spec.weights:
        name = names[index]
        q, scale, zero = (inits[f"{name}.weight_{part}"] for part in ("quantized", "scale", "zero_point"))
        shape = (-1, 1, 1, 1)
        ort = (q.astype(np.float32) - zero.astype(np.float32).reshape(shape)) * scale.reshape(shape)
        ours = fake_quant_weight(model.get_submodule(name).weight, *spec.weight_range).detach().numpy()
        np.testing.assert_array_equal(ours, ort, err_msg=f"{recipe.describe()}: layer {name}")


@pytest.mark.slow
def test_the_plan_for_nin_follows_the_recipes_qdq_graph():
    vnni = fake_quant_plan(he_init_nin(SIZE), choose_recipe("x86-vnni"), SIZE)
    # The last block stays FP32, but its input (the last MaxPool's output) and the logits are quantized.
    assert vnni == FakeQuantSpec((-127, 127), (0, 255), False, tuple(range(9)), tuple(range(10)), True)
    avx2 = fake_quant_plan(he_init_nin(SIZE), choose_recipe("x86-avx2"), SIZE)
    assert avx2.weight_range == (-64, 64)
    trt = fake_quant_plan(he_init_nin(SIZE), choose_recipe("tensorrt"), SIZE)
    assert (trt.activation_range, trt.activation_symmetric, trt.weights) == ((-127, 127), True, tuple(range(12)))


def test_activations_are_rounded_to_onnxruntimes_asymmetric_uint8_grid():
    observer = RangeObserver(0, 255, symmetric=False, momentum=0.01)
    x = torch.linspace(0.0, 2.55, 1000)
    y = observer(x, training=True)
    steps = (y / 0.01).numpy()  # scale (2.55 - 0) / 255, zero point 0
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
    assert float((y - x).abs().max()) <= 0.005 + 1e-6
    observer(x * 10, training=False)  # evaluation does not move the range
    assert float(observer.high) == pytest.approx(2.55)


def test_fake_quant_keeps_the_state_dict_and_comes_off():
    model = he_init_nin(SIZE).eval()
    keys = list(model.state_dict())
    x = torch.from_numpy(_noise(2))
    with torch.no_grad():
        plain = model(x)
        fq = FakeQuant(model, FakeQuantSpec((-127, 127), (0, 255), False, tuple(range(9)), tuple(range(10)), True))
        quantized = model(x)
        assert list(model.state_dict()) == keys
        assert not torch.equal(plain, quantized)
        torch.testing.assert_close(quantized, plain, atol=0.05 * float(plain.abs().max()), rtol=0)
        fq.remove()
        assert torch.equal(model(x), plain)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_fashion):
    """A NiN trained one epoch on the tiny Fashion-MNIST-like data, then nin-qat's fine-tune of it."""
    tmp = tmp_path_factory.mktemp("qat")
    src = tmp / "src.pt"
    train(TrainConfig(data=str(tiny_fashion), epochs=2, input_size=SIZE, lr=2e-3, output=str(src), plot=False, **FAST))
    out = tmp / "qat.pt"
    report = run_qat(
        QatConfig(weights=str(src), data=str(tiny_fashion), int8_target="x86-vnni", lr=1e-4, output=str(out), **FAST)
    )
    return src, out, report


@pytest.mark.slow
def test_the_qat_checkpoint_is_an_ordinary_one_with_its_recipe(trained):
    src, out, report = trained
    saved = torch.load(out, weights_only=True)
    assert list(saved["state_dict"]) == list(torch.load(src, weights_only=True)["state_dict"])
    assert saved[QAT_KEY] == {
        "target": "x86-vnni",
        "types": "u8s8",
        "reduce_range": False,
        "fp32_layers": "last-block",
        "epochs": 1,
        "lr": 1e-4,
    }
    assert "optimizer" not in saved and saved["recipe"]["init_from"] == str(src)
    model = create_model("nin", input_size=SIZE)
    load_weights(model, out)  # plain create_model + load_weights, as every consumer loads it
    assert (report.quantized_weights, report.quantized_inputs, report.output_quantized) == (9, 10, True)
    assert "fake-quantized: the weights of 9 layers, the inputs of 10, and the output" in report.to_table()


@pytest.mark.slow
def test_nin_export_of_qat_weights_takes_their_recipe_and_passes_the_int8_gate(trained, tiny_fashion, tmp_path):
    _, out, _ = trained
    onnx_path = tmp_path / "qat-int8.onnx"
    summary = run_export(
        ExportConfig(
            weights=str(out),
            precision="int8",
            calibration_data=str(tiny_fashion),
            calibration_size=32,
            check_batch_sizes=(1,),
            output=str(onnx_path),
        )
    )
    reduced = summary.reduced
    assert reduced is not None and reduced.top1_agreement >= 0.99  # the default gate, which run_export enforces
    assert reduced.recipe.startswith("x86-vnni: U8S8, reduce_range off, FP32 kept: last-block")
    assert "QAT weights: fine-tuned 1 epoch(s) at lr 0.0001 under this recipe's fake quantization" in reduced.recipe
    metadata = Classifier(str(onnx_path)).metadata
    assert metadata.int8_target == "x86-vnni"
    assert metadata.int8_recipe["qat"] == {
        "epochs": 1,
        "lr": 1e-4,
        "trained_for": "x86-vnni: U8S8, reduce_range off, FP32 kept: last-block",
    }
    # Another recipe asked for is used, and said to differ from the one the weights were fine-tuned for.
    other = ExportConfig(weights=str(out), precision="int8", int8_target="x86-avx2").int8_recipe()
    assert other.target == "x86-avx2" and other.reduce_range
    assert other.why.endswith(
        "note: the QAT weights were fine-tuned for x86-vnni's U8S8, reduce_range off, FP32 kept: last-block, "
        "not this recipe"
    )
    # The same recipe given explicitly is the QAT recipe, with nothing to note.
    same = ExportConfig(weights=str(out), precision="int8", int8_target="x86-vnni").int8_recipe()
    assert same.why.startswith("QAT weights")


@pytest.mark.slow
def test_nin_qat_fine_tunes_a_class_folder_checkpoint(tmp_path):
    data = make_folder(tmp_path / "parts", per_class=8)
    src = tmp_path / "src.pt"
    train(TrainConfig(data=str(data), epochs=1, input_size=SIZE, lr=1e-3, output=str(src), plot=False, batch_size=8))
    out = tmp_path / "qat.pt"
    args = ["--weights", src, "--data", data, "--output", out, "--batch-size", 8, "--workers", 0, "--format", "json"]
    result = run_cli(qat_main, [*args, "--int8-target", "x86-avx2"])
    assert result.exit_code == 0, result.stderr
    assert '"recipe": "U8S8, reduce_range on, FP32 kept: last-block"' in result.stdout
    saved = torch.load(out, weights_only=True)
    assert saved[QAT_KEY]["target"] == "x86-avx2" and saved["card"]["labels"] == ["bolt", "nut", "washer"]
    assert saved["card"]["model_options"] == torch.load(src, weights_only=True)["card"]["model_options"]


def test_options_are_checked_before_any_work(tmp_path, tiny_fashion):
    data = ["--data", tiny_fashion]
    result = run_cli(qat_main, ["--weights", "pretrained", *data, "--int8-target", "x86-sse"])
    assert result.exit_code == 2 and "'x86-sse' is not one of 'auto', 'x86-avx2'" in result.stderr
    result = run_cli(qat_main, ["--weights", "pretrained", *data, "--epochs", 0, "--output", tmp_path / "q.pt"])
    assert_one_line_error(result, "epochs must be a positive whole number, got 0")
    result = run_cli(qat_main, ["--weights", "pretrained", "--data", tmp_path / "nope"])
    assert_one_line_error(result, f"--data '{tmp_path / 'nope'}' does not exist; give the images the model was")
    result = run_cli(qat_main, ["--data", tiny_fashion])
    assert_one_line_error(result, "--weights is required: the NiN checkpoint")
    result = run_cli(qat_main, ["--weights", "pretrained", *data, "--lr", 0])
    assert_one_line_error(result, "lr must be a positive number (e.g. 5e-05), got 0.0")
    result = run_cli(qat_main, ["--weights", tmp_path / "missing.pt", *data, "--output", tmp_path / "q.pt"])
    assert_one_line_error(result, f"weights file '{tmp_path / 'missing.pt'}' does not exist")
    (tmp_path / "notes.pt").write_text("mine")
    result = run_cli(qat_main, ["--weights", "pretrained", *data, "--output", tmp_path / "notes.pt"])
    assert_one_line_error(result, "exists and is not a nin-qat checkpoint: this run would replace it")
    assert (tmp_path / "notes.pt").read_text() == "mine"
    broken = tmp_path / "broken.pt"
    for record, why in (({"target": "x86-vnni"}, "KeyError: 'types'"), ([1], "TypeError: a list, not a dict")):
        torch.save({"state_dict": {}, QAT_KEY: record}, broken)
        with pytest.raises(ConfigError, match=f"'{broken}' has a broken qat record \\({why}\\); run nin-qat again"):
            ExportConfig(weights=str(broken), precision="int8").int8_recipe()


@pytest.mark.slow
def test_the_benchmark_measures_ptq_the_control_and_qat_on_the_same_images(trained, tiny_fashion, tmp_path):
    from nin_edge.benchmarks.qat import main

    src, _, _ = trained
    args = ["--weights", src, "--data", tiny_fashion, "--input-sizes", SIZE, "--int8-target", "x86-vnni"]
    limits = ["--train-limit", 96, "--lr", 1e-4, "--calibration-size", 16, "--eval-size", 24]
    result = run_cli(main, [*args, *limits, "--out", tmp_path])
    assert result.exit_code == 0, result.stderr
    saved = json.loads((tmp_path / f"src-x86-vnni-{SIZE}-96.json").read_text())
    assert [row["variant"] for row in saved["rows"]] == ["ptq", "finetune+ptq", "qat"]
    assert {row["images"] for row in saved["rows"]} == {24}
    assert "QAT weights" in saved["rows"][2]["recipe"] and "QAT" not in saved["rows"][1]["recipe"]


@pytest.mark.slow
def test_activation_ranges_are_the_ones_onnxruntime_calibrates():
    """Observers that saw the calibration images give the scales of the QDQ model's activations."""
    model = he_init_nin(SIZE).eval()
    recipe = choose_recipe("x86-vnni")
    spec = fake_quant_plan(model, recipe, SIZE)
    images = _noise(16)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(export_onnx(model=model, input_size=SIZE).proto, str(fp32))
        quantize_int8(fp32_path=fp32, output=int8, calibration=CalibrationSet(images, None, "noise"), recipe=recipe)
        graph = onnx.load(str(int8)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    made_by = {out: node for node in graph.node for out in node.output}
    with torch.no_grad():
        fq = FakeQuant(model, spec)
        model(torch.from_numpy(images))  # in eval mode the first batch sets the ranges: minmax over these images
    ours = {name: float(o.high - torch.clamp(o.low, max=0.0)) / 255 for name, o in fq.observers.items()}
    compute = [node for node in graph.node if node.op_type == "Conv"]
    theirs = {f"input of layer {i}": float(inits[made_by[compute[i].input[0]].input[1]]) for i in spec.inputs}
    theirs["output"] = float(inits[made_by[graph.output[0].name].input[1]])
    assert ours.keys() == theirs.keys()
    # The image's range is exact; later ones see the fake-quantized layers before them, onnxruntime's the FP32 ones.
    assert ours["input of layer 0"] == pytest.approx(theirs["input of layer 0"], rel=1e-6)
    for name, scale in theirs.items():
        assert ours[name] == pytest.approx(scale, rel=0.03), name
