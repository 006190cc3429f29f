"""nin-export --bundle and Classifier(DIR): a verified deploy folder."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from nin_edge.export import ExportConfig
from nin_edge.export.cli import inspect_main
from nin_edge.export.cli import main as export_cli
from nin_edge.export.targets import bundle as bundle_mod
from nin_edge.export.targets.bundle import write_bundle
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.core.errors import ConfigError, ModelFileError

from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow

SIZE = 70
EXPECTED_FILES = {
    "MODEL_CARD.md",
    "manifest.json",
    "model.onnx",
    "model.ort",
    "model.int8.onnx",
    "model.int8.ort",
    "model.fp16.onnx",
    "model.fp16.ort",
    "model.mobile.onnx",
    "model.mobile.ort",
    "required_operators.config",
    "mobile_usability.txt",
}


def _config(tiny_fashion, **kw) -> ExportConfig:
    base = dict(
        random_init=True,
        input_size=SIZE,
        check_batch_sizes=(1,),
        calibration_data="synthetic",
        calibration_size=16,
        eval_data=str(tiny_fashion),
        eval_size=40,
        min_agreement=0.0,
    )
    return ExportConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def built(tiny_fashion, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles") / "nin-bundle"
    summary = write_bundle(config=_config(tiny_fashion), folder=folder, precisions=("int8", "fp16"))
    return folder, summary


def _copy(built, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(built[0], folder)
    return folder


def test_the_bundle_holds_every_file_with_its_sha256(built):
    folder, summary = built
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "nin-edge-bundle" and manifest["format_version"] == 1
    assert set(manifest["files"]) == EXPECTED_FILES - {"manifest.json"}
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert list(manifest["models"]) == ["fp32", "int8", "fp16"] == list(summary.precisions)
    for entry in manifest["models"].values():
        assert 0 <= entry["accuracy"] <= 1
        assert entry["latency_ms"]["CPUExecutionProvider"]["1"] > 0
    assert manifest["contract"]["input"] == {
        "name": "input",
        "dtype": "float32",
        "shape": ["batch", 1, SIZE, SIZE],
        "layout": "NCHW",
    }
    assert manifest["training"]["note"].startswith("untrained (random initialisation)")
    assert all(err <= bundle_mod.ORT_ATOL for err in manifest["ort_format_max_abs_err"].values())
    assert len(manifest["ort_format_max_abs_err"]) == 4
    ops = (folder / "required_operators.config").read_text()
    assert "ai.onnx;" in ops and "/tmp" not in ops


def test_mobile_variant_is_fixed_batch_and_one_partition_for_coreml(built):
    folder, summary = built
    mobile = Classifier(folder / "model.mobile.onnx", "cpu")
    assert mobile.fixed_batch == 1 and mobile.weights_check.startswith("verified")
    x = np.random.default_rng(0).random((1, 1, SIZE, SIZE), dtype=np.float32)
    np.testing.assert_allclose(mobile.logits(x), Classifier(folder, "cpu").logits(x), atol=1e-5)
    nodes = len(onnx.load(str(folder / "model.mobile.onnx")).graph.node)
    line = f"model.mobile.onnx: 1 partitions with a total of {nodes}/{nodes} nodes can be handled by the CoreML "
    line += "MLProgram EP."
    assert line in summary.mobile_usability


def test_classifier_loads_each_precision_of_a_bundle(built):
    folder, _ = built
    x = np.random.default_rng(1).random((2, 1, SIZE, SIZE), dtype=np.float32)
    for precision, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx"), ("fp16", "model.fp16.onnx")):
        from_bundle = Classifier(folder, "cpu", precision=precision)
        assert from_bundle.source == str(folder / name) and from_bundle.metadata.precision == precision
        np.testing.assert_array_equal(from_bundle.logits(x), Classifier(folder / name, "cpu").logits(x))
    with pytest.raises(ConfigError, match="precision must be one of fp32, fp16, int8, got 'int4'"):
        Classifier(folder, "cpu", precision="int4")
    with pytest.raises(ConfigError, match="picks a model of a bundle folder"):
        Classifier(folder / "model.onnx", "cpu", precision="int8")


def test_the_card_says_how_to_feed_and_load_the_model(built):
    card = (built[0] / "MODEL_CARD.md").read_text()
    for fragment in (
        f"Input `input`: float32, shape (batch, 1, {SIZE}, {SIZE}), layout NCHW.",
        'Classifier("BUNDLE_DIR", precision="fp32")',
        'nin_open("BUNDLE_DIR", NULL, &model, &err)',
        'Ort::Session session(env, "model.onnx", options)',
        "OrtEnvironment.getEnvironment()",
        "| int8 | `model.int8.onnx`, `model.int8.ort` |",
        "T-shirt/top",
        "MIT",
        "| `model.mobile.onnx` | CoreML MLProgram | yes (",
        "top-1 on the first 40 images of the Fashion-MNIST test split (t10k files)",
    ):
        assert fragment in card, fragment
    assert str(built[0].parent) not in card and "/tmp" not in card  # no path of the exporting machine
    assert (built[0] / "mobile_usability.txt").read_text().startswith("model.onnx: ")


def test_an_altered_missing_or_newer_bundle_is_refused(built, tmp_path):
    altered = _copy(built, tmp_path / "a")
    data = bytearray((altered / "model.int8.onnx").read_bytes())
    data[-100] ^= 0xFF
    (altered / "model.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"bundle file '.*model.int8.onnx' does not match the sha256"):
        Classifier(altered, "cpu")  # every file is checked, not only the one loaded
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((28, 28), np.uint8))
    assert_one_line_error(run_cli(infer_cli, [altered, x]), "model.int8.onnx' does not match the sha256")
    missing = _copy(built, tmp_path / "m")
    (missing / "model.fp16.ort").unlink()
    with pytest.raises(ModelFileError, match="is missing 'model.fp16.ort', which its manifest lists"):
        Classifier(missing, "cpu")
    newer = _copy(built, tmp_path / "n")
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["format_version"] = 2
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="has format version 2; this nin-edge reads up to 1: upgrade nin-edge"):
        Classifier(newer, "cpu")
    with pytest.raises(ModelFileError, match="is a folder but not a nin-edge bundle: it has no manifest.json"):
        Classifier(tmp_path, "cpu")


def test_a_failed_build_leaves_the_complete_bundle_alone(built, tiny_fashion, tmp_path, monkeypatch):
    folder = _copy(built, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(_path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_mod, "_usability", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_bundle(config=_config(tiny_fashion), folder=folder, precisions=())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temporary folder left


def test_a_bundle_is_replaced_whole_by_a_new_one(built, tiny_fashion, tmp_path):
    """Through a link to it (the link is followed and stays), and a killed build's folder goes."""
    folder = _copy(built, tmp_path)
    link = tmp_path / "current"
    link.symlink_to(folder)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".copy.nin-edge-{int(dead.stdout)}-k1ll3d.tmp"
    shutil.copytree(built[0], killed)
    write_bundle(config=_config(tiny_fashion, seed=5), folder=link, precisions=())
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES - {
        n for n in EXPECTED_FILES if ".int8." in n or ".fp16." in n
    }
    assert "random-init seed 5" in json.loads((folder / "manifest.json").read_text())["source"]["weights"]
    assert link.is_symlink() and link.resolve() == folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "current"]


def test_bundle_refusals(tmp_path, tiny_fashion):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"x")
    args = ["--random-init", "--input-size", SIZE, "--check-batch-sizes", 1]
    assert_one_line_error(
        run_cli(export_cli, [*args, "--bundle", other]), "exists, is not empty and holds no manifest.json"
    )
    assert (other / "cat.jpg").read_bytes() == b"x"
    assert_one_line_error(
        run_cli(export_cli, [*args, "--bundle", tmp_path / "b", "--output", tmp_path / "x.onnx"]),
        "--output and --bundle exclude each other",
    )
    assert_one_line_error(
        run_cli(export_cli, [*args, "--bundle", tmp_path / "b", "--bundle-precisions", "fp32,int4"]),
        "bundle precision must be one of fp32, fp16, int8, got 'int4'",
    )
    assert_one_line_error(
        run_cli(export_cli, [*args, "--bundle", tmp_path / "b", "--bundle-precisions", "int8"]),
        "INT8 needs calibration images",
    )
    assert not (tmp_path / "b").exists()


def test_inspect_reads_a_bundle(built):
    result = run_cli(inspect_main, [built[0], "--no-layers", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["files"]) == EXPECTED_FILES
    assert [m["path"].rsplit("/", 1)[1] for m in report["models"]] == [
        "model.fp16.onnx",
        "model.int8.onnx",
        "model.mobile.onnx",
        "model.onnx",
    ]
    assert all(m["weights_check"] == "digest matches" for m in report["models"])


def test_card_repeats_every_stage_of_the_shipped_weights_record_with_its_size():
    from types import SimpleNamespace

    record = json.loads((bundle_mod.WEIGHTS_DIR / "nin_fashion_mnist.json").read_text())
    training = bundle_mod._training(ExportConfig(), SimpleNamespace(weights="pretrained nin_fashion_mnist.pt"))
    assert [st["name"] for st in training["stages"]] == [st["name"] for st in record["stages"]]
    # Stage 1 was recorded when the flag was --image-size; the card says input_size for every stage.
    assert all(st["recipe"]["input_size"] == 112 for st in training["stages"])
    assert [st["final_test_acc"] for st in training["stages"]] == [
        st["history"][-1].get("held_out_acc", st["history"][-1].get("test_acc")) for st in record["stages"]
    ]
