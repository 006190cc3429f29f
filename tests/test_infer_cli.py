"""nin-infer end to end: image files and .npy arrays in, a table / JSON / CSV out, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.infer import main as infer_cli
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_nin_path):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    Image.fromarray(images[0]).save(folder / "shoe.png")
    np.save(folder / "batch.npy", images[1:, :, :, None])
    np.save(folder / "tensor.npy", Classifier(tiny_nin_path, "cpu").prepare(images[0])[0])  # (1,224,224) float32
    return folder, images


def test_json_has_one_record_per_image_with_top_k(tiny_nin_path, inputs):
    folder, images = inputs
    args = [
        tiny_nin_path,
        folder / "shoe.png",
        folder / "batch.npy",
        "--top-k",
        3,
        "--format",
        "json",
        "--provider",
        "cpu",
    ]
    result = run_cli(infer_cli, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["providers"] == ["CPUExecutionProvider"] and report["model"] == "nin_tiny"
    names = [r["input"] for r in report["results"]]
    assert names == [str(folder / "shoe.png"), f"{folder / 'batch.npy'}[0]", f"{folder / 'batch.npy'}[1]"]
    expected = Classifier(tiny_nin_path, "cpu").classify(list(images), top_k=3)
    for record, preds in zip(report["results"], expected, strict=False):
        assert [p["label"] for p in record["top"]] == [p.label for p in preds]
        assert [p["probability"] for p in record["top"]] == pytest.approx([p.probability for p in preds], abs=1e-6)


def test_table_and_csv(tiny_nin_path, inputs):
    folder, _ = inputs
    table = run_cli(infer_cli, [tiny_nin_path, folder / "shoe.png", folder / "tensor.npy", "--top-k", 2])
    assert table.exit_code == 0, table.stderr
    assert table.stdout.startswith("model nin_tiny on CPUExecutionProvider")
    assert "shoe.png" in table.stdout and "tensor.npy" in table.stdout
    csv = run_cli(infer_cli, [tiny_nin_path, folder / "shoe.png", "--top-k", 2, "--format", "csv"]).stdout.splitlines()
    # One row per image, the same rows --output writes: the best class, the runner-up, the error.
    assert csv[0] == "input,label,index,probability,label_2,probability_2,error,model_sha256" and len(csv) == 2


def test_png_and_float_npy_of_the_same_image_agree(tiny_nin_path, inputs):
    folder, _ = inputs
    report = json.loads(
        run_cli(infer_cli, [tiny_nin_path, folder / "shoe.png", folder / "tensor.npy", "--format", "json"]).stdout
    )
    a, b = (r["top"] for r in report["results"])
    assert [p["label"] for p in a] == [p["label"] for p in b]
    assert [p["probability"] for p in a] == pytest.approx([p["probability"] for p in b], abs=1e-5)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this build has CUDA")
def test_missing_provider_and_fallback(tiny_nin_path, inputs):
    folder, _ = inputs
    assert_one_line_error(
        run_cli(infer_cli, [tiny_nin_path, folder / "shoe.png", "--provider", "cuda"]),
        "CUDAExecutionProvider is not available",
        "onnxruntime-gpu",
    )
    result = run_cli(
        infer_cli, [tiny_nin_path, folder / "shoe.png", "--provider", "cuda", "--fallback", "--format", "json"]
    )
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: execution provider CUDAExecutionProvider is not available")
    assert json.loads(result.stdout)["providers"] == ["CPUExecutionProvider"]


def test_bad_inputs_are_one_line_errors(tiny_nin_path, inputs, tmp_path):
    folder, _ = inputs
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 224, 224), np.float64))
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    cases = [
        ([tmp_path / "none.onnx", folder / "shoe.png"], "model file"),
        ([tiny_nin_path, tmp_path / "none.png"], "does not exist"),
        ([tiny_nin_path, pickled], "cannot read array file"),
        (
            [tiny_nin_path, wrong],
            "holds float64 (2, 3, 224, 224); expected uint8 images (H,W), (H,W,C), (N,H,W) or (N,H,W,C)",
        ),
        ([tiny_nin_path, notes], "cannot read image"),
        ([tiny_nin_path, folder / "shoe.png", "--top-k", 11], "--top-k must be a whole number from 1 to 10 ("),
        ([notes, folder / "shoe.png"], "onnxruntime cannot load model"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli(infer_cli, args), fragment)


def test_old_flag_spellings_still_work_with_a_warning(tiny_nin_path, tmp_path):
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((3, 28, 28, 1), np.uint8))
    old = run_cli(infer_cli, [tiny_nin_path, image, "--batch-size", 2, "--format", "json"])
    new = run_cli(infer_cli, [tiny_nin_path, image, "--max-batch", 2, "--format", "json"])
    assert old.exit_code == 0 and json.loads(old.stdout)["results"] == json.loads(new.stdout)["results"]
    assert "warning: --batch-size is now --max-batch; the old spelling goes in the next release" in old.stderr
    assert "--batch-size" not in run_cli(infer_cli, ["--help"]).stdout
    both = run_cli(infer_cli, [tiny_nin_path, image, "--batch-size", 2, "--max-batch", 4])
    assert (
        both.exit_code == 2 and "--batch-size is the old spelling of --max-batch; give only --max-batch" in both.stderr
    )
