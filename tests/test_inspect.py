"""nin-inspect: what a model file or a bundle folder is."""

from __future__ import annotations

import json

import pytest
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.cli import inspect_main
from nin_edge.export.inspect import FolderInspection, ModelInspection, inspect_model, inspect_path
from nin_edge.models import create_model, model_card, profile_model

from tests.conftest import assert_one_line_error, flip_weights, foreign_model, run_cli


@pytest.mark.parametrize("name", ["nin", "vgg11_slim"])
def test_totals_match_the_pytorch_model(name, tmp_path):
    size = model_card(name).min_input_size
    out = tmp_path / f"{name}.onnx"
    run_export(ExportConfig(model=name, random_init=True, input_size=size, output=str(out), check_batch_sizes=(1,)))
    report = inspect_model(out)
    expected = profile_model(create_model(name, input_size=size))
    assert (report.params, report.macs) == (expected.params, expected.macs)
    assert report.weights_check == "digest matches" and report.opset == 17
    assert report.inputs == (f"input: float32 (batch, 1, {size}, {size})",)
    assert report.outputs == ("logits: float32 (batch, 10)",)
    assert report.metadata["model"] == name and report.ops["Conv"] >= 4
    assert report.placement["CPUExecutionProvider"].startswith("takes all ")
    assert sum(layer.params for layer in report.layers) == expected.params


def test_nin_layers_and_the_cli_json(nin_path):
    result = run_cli(inspect_main, [nin_path, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["params"] == 1_992_166 and report["macs"] == 762_297_352
    first = report["layers"][0]
    assert (first["op"], first["output_shape"], first["params"]) == ("Conv", "1x96x54x54", 96 * 121 + 96)
    assert first["macs"] == 96 * 54 * 54 * 121
    assert report["ops"] == {"Conv": 12, "Relu": 12, "MaxPool": 3, "GlobalAveragePool": 1, "Reshape": 1}
    table = run_cli(inspect_main, [nin_path, "--no-layers"]).stdout
    assert "MACs per image                 762,297,352" in table and "1x96x54x54" not in table


def test_damaged_and_foreign_models_are_reported(tiny_nin_path, tmp_path):
    damaged = inspect_model(flip_weights(tiny_nin_path, tmp_path / "damaged.onnx"), layers=False)
    assert damaged.weights_check.startswith("DIGEST MISMATCH: recorded ")
    foreign = inspect_model(foreign_model(tmp_path / "f.onnx"))
    assert foreign.weights_check == "no digest recorded (not written by nin-export)"
    assert foreign.layers[-1].macs == 3  # Gemm (N=1) x (1 x 3)


def test_a_folder_lists_its_files_and_inspects_each_model(tiny_nin_path, tmp_path):
    (tmp_path / "a.onnx").write_bytes(tiny_nin_path.read_bytes())
    (tmp_path / "notes.txt").write_text("hello")
    report = inspect_path(tmp_path, layers=False)
    assert isinstance(report, FolderInspection)
    assert report.files == {"a.onnx": tiny_nin_path.stat().st_size, "notes.txt": 5}
    assert [type(m) for m in report.models] == [ModelInspection]


def test_refusals(tmp_path):
    assert_one_line_error(run_cli(inspect_main, [tmp_path / "no.onnx"]), "model file", "does not exist")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07junk")
    assert_one_line_error(run_cli(inspect_main, [tmp_path / "junk.onnx"]), "is not a readable ONNX model")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli(inspect_main, [tmp_path / "empty"]), "holds no .onnx model")
