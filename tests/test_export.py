"""nin-export and the export steps: opset, symbolic batch, simplification, metadata, parity, refusals."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from nin_edge.export import (
    MAX_OPSET,
    ExportConfig,
    check_graph,
    check_parity,
    export_onnx,
    run_export,
)
from nin_edge.export.cli import main as export_cli
from nin_edge.models import FASHION_MNIST_CLASSES, create_model, list_models
from nin_edge.models.registry import model_card, pretrained_path
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError

from tests.conftest import assert_one_line_error, run_cli


def smallest_size(name: str) -> int:
    return create_model(name).min_input_size


@pytest.fixture(scope="module")
def nin_onnx(tmp_path_factory):
    """NiN exported by the CLI at its default 224 input, opset 17."""
    out = tmp_path_factory.mktemp("export") / "nin.onnx"
    result = run_cli(export_cli, ["--opset", 17, "--input-size", 224, "--output", out, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


def test_default_export_runs_at_batch_1_and_7(nin_onnx):
    path, _ = nin_onnx
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        (logits,) = session.run(None, {"input": np.random.rand(n, 1, 224, 224).astype(np.float32)})
        assert logits.shape == (n, 10)


def test_exported_graph_invariants(nin_onnx):
    path, summary = nin_onnx
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 224, 224]
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Dropout", "Identity"}
    assert summary["ops"] == {"Conv": 12, "Relu": 12, "MaxPool": 3, "GlobalAveragePool": 1, "Reshape": 1}
    onnx.checker.check_model(str(path), full_check=True)
    assert not path.with_suffix(".onnx.data").exists()


def test_metadata_is_in_the_model(nin_onnx):
    path, _ = nin_onnx
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["model"] == "nin"
    assert json.loads(props["labels"]) == list(FASHION_MNIST_CLASSES)
    assert props["opset"] == "17" and props["input_size"] == "224" and props["in_channels"] == "1"
    assert props["layout"] == "NCHW" and props["precision"] == "fp32"
    assert props["weights"].startswith("pretrained nin_fashion_mnist.pt sha256:")
    assert json.loads(props["preprocessing"]) == {
        "color": "grayscale",
        "resize": "bilinear",
        "scale": 1 / 255,
        "mean": [0.0],
        "std": [1.0],
    }
    assert props["toolkit_version"]
    assert "Ankle boot" in model.doc_string and "Preprocessing: grayscale" in model.doc_string


def test_summary_json_reports_counts_parity_and_time(nin_onnx):
    path, summary = nin_onnx
    assert summary["params"] == 1_992_166 and summary["macs"] == 762_297_352
    assert summary["file_bytes"] == path.stat().st_size
    assert summary["nodes_exported"] == 29 and summary["nodes_final"] == 29
    assert [r["batch_size"] for r in summary["parity"]["batches"]] == [1, 2, 7]
    assert summary["parity"]["passed"] is True and summary["parity"]["max_abs_err"] < 1e-4
    assert all(r["top1_agreement"] == 1.0 for r in summary["parity"]["batches"])
    assert summary["seconds"] > 0


def test_summary_table(tmp_path):
    result = run_cli(export_cli, ["--output", tmp_path / "n.onnx", "--input-size", 96, "--check-batch-sizes", "3"])
    assert result.exit_code == 0, result.stderr
    for line in (
        "parameters      1,992,166",
        "nodes           29 exported -> 29 final",
        "parity of the FP32 graph against PyTorch",
    ):
        assert line in result.stdout


@pytest.mark.parametrize("name", list_models())
@pytest.mark.slow
def test_every_model_exports_with_a_dynamic_batch(tmp_path, name):
    size = smallest_size(name)
    summary = run_export(
        ExportConfig(model=name, input_size=size, output=str(tmp_path / f"{name}.onnx"), check_batch_sizes=(1, 3, 5))
    )
    assert summary.parity.passed and [r.batch_size for r in summary.parity.batches] == [1, 3, 5]
    session = ort.InferenceSession(summary.output, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((4, 1, size, size), np.float32)})
    assert logits.shape == (4, 10)


def test_book_checkpoint_is_exported_with_its_hash(tmp_path):
    torch.manual_seed(3)
    trained = create_model("nin")
    ckpt = tmp_path / "book.pt"
    torch.save({"model": trained.state_dict()}, ckpt)
    out = tmp_path / "n.onnx"
    result = run_cli(export_cli, ["--weights", ckpt, "--output", out, "--input-size", 80, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert json.loads(result.stdout)["weights"] == f"sha256:{digest}"
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["weights"] == f"sha256:{digest}"
    x = np.random.rand(2, 1, 80, 80).astype(np.float32)
    with torch.no_grad():
        ref = trained.eval()(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_no_simplify_still_checks_the_batch(tmp_path):
    summary = run_export(ExportConfig(output=str(tmp_path / "raw.onnx"), input_size=70, simplify=False))
    assert summary.simplified is False and summary.nodes_final == summary.nodes_exported


def test_random_init_is_reproducible_and_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = run_export(ExportConfig(output=str(tmp_path / "a.onnx"), input_size=70, seed=5, random_init=True))
    assert torch.equal(torch.rand(1), before)
    b = run_export(ExportConfig(output=str(tmp_path / "b.onnx"), input_size=70, seed=5, random_init=True))
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert a.weights == "random-init seed 5"
    del b


@pytest.mark.parametrize("opset", [11, 13, MAX_OPSET])
def test_other_opsets_are_written_as_asked(tmp_path, opset):
    model = create_model("nin", input_size=70)
    result = export_onnx(model=model, opset=opset)
    assert result.opset == opset
    assert check_graph(model=result.proto, opset=opset).batch_input == "batch"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_check_graph_catches_a_fixed_batch(tmp_path):
    model = create_model("nin", input_size=70).eval()
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 70, 70),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
    )
    with pytest.raises(CheckFailedError, match="the batch axis is not symbolic: input has '1'"):
        check_graph(model=onnx.load(str(path)), opset=17)
    with pytest.raises(CheckFailedError, match="the model has opset 17, expected 13"):
        check_graph(model=onnx.load(str(path)), opset=13)


def test_parity_reports_a_real_difference(tmp_path):
    model = create_model("nin", input_size=70)
    exported = export_onnx(model=model).proto.SerializeToString()
    with torch.no_grad():
        model[7][4].bias.add_(0.01)  # the PyTorch side now differs by 0.01 in every logit
    parity = check_parity(model=model, onnx_model=exported, batch_sizes=(2,), atol=1e-4)
    assert not parity.passed
    assert parity.batches[0].max_abs_err == pytest.approx(0.01, rel=1e-3)


def test_failed_parity_fails_the_export_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "n.onnx"
    out.write_bytes(b"previous model")
    result = run_cli(export_cli, ["--output", out, "--input-size", 70, "--atol", "1e-30"])
    assert_one_line_error(result, "parity check failed: max abs error", "exceeds atol 1e-30", "was not written")
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.onnx"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--model", "resnet"],
            ["unknown model 'resnet'; known models: alexnet, nin, nin_d2l, nin_pruned, nin_pruned_quarter, vgg11"],
        ),
        (["--opset", "5"], ["opset 5 is not supported", f"choose one from 9 to {MAX_OPSET}"]),
        (["--opset", "30"], ["opset 30 is not supported"]),
        (["--input-size", "50"], ["input size 50 is too small for nin: it needs at least 67 pixels"]),
        (["--in-channels", "0"], ["in_channels must be a positive whole number, got 0"]),
        (["--num-classes", "-2"], ["num_classes must be a positive whole number, got -2"]),
        (["--weights", "missing.pt"], ["weights file 'missing.pt' does not exist"]),
        (["--output", "no/such/dir/n.onnx"], ["output folder 'no/such/dir' does not exist"]),
        (["--output", "."], ["output '.' exists and is a directory, not a regular file"]),
        (["--atol", "0"], ["atol must be a positive number, got 0.0"]),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli(export_cli, args), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_weights_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert_one_line_error(
        run_cli(export_cli, ["--weights", bad, "--output", tmp_path / "n.onnx"]), f"cannot read weights file '{bad}'"
    )


def test_mismatched_weights_name_the_key(tmp_path):
    ckpt = tmp_path / "c3.pt"
    torch.save(create_model("nin", in_channels=3).state_dict(), ckpt)
    assert_one_line_error(
        run_cli(export_cli, ["--weights", ckpt, "--output", tmp_path / "n.onnx"]),
        "key '0.0.weight' has shape (96, 3, 11, 11), expected (96, 1, 11, 11)",
    )


def test_bad_batch_sizes_are_refused_by_click(tmp_path):
    result = run_cli(export_cli, ["--check-batch-sizes", "1,0", "--output", tmp_path / "n.onnx"])
    assert result.exit_code == 2 and "every value must be positive" in result.stderr


def test_config_validates_before_work(tmp_path):
    with pytest.raises(ConfigError, match="check batch sizes must be positive"):
        run_export(ExportConfig(output=str(tmp_path / "n.onnx"), check_batch_sizes=()))


def test_default_export_uses_the_shipped_weights_at_their_size(tmp_path):
    result = run_cli(export_cli, ["--output", tmp_path / "nin.onnx", "--format", "json", "--check-batch-sizes", 1])
    summary = json.loads(result.stdout)
    digest = hashlib.sha256(pretrained_path("nin").read_bytes()).hexdigest()
    assert summary["weights"] == f"pretrained nin_fashion_mnist.pt sha256:{digest}"
    assert summary["input_size"] == model_card("nin").weights_input_size == 112
    random = run_cli(
        export_cli, ["--random-init", "--output", tmp_path / "r.onnx", "--format", "json", "--check-batch-sizes", 1]
    )
    assert json.loads(random.stdout)["input_size"] == 224


@pytest.mark.slow
def test_random_init_flag_and_when_pretrained_does_not_fit(tmp_path):
    result = run_cli(
        export_cli, ["--random-init", "--input-size", 70, "--output", tmp_path / "r.onnx", "--format", "json"]
    )
    assert json.loads(result.stdout)["weights"] == "random-init seed 0"
    other = run_export(ExportConfig(output=str(tmp_path / "c3.onnx"), input_size=70, in_channels=3))
    assert other.weights == "random-init seed 0 (no pretrained weights for nin with 3 channel(s), 10 classes)"
    alex = run_export(ExportConfig(model="alexnet", output=str(tmp_path / "a.onnx"), input_size=65))
    assert alex.weights.startswith("random-init seed 0 (no pretrained weights for alexnet")
    assert_one_line_error(
        run_cli(export_cli, ["--random-init", "--weights", tmp_path / "x.pt", "--output", tmp_path / "n.onnx"]),
        "--weights and --random-init exclude each other",
    )


def test_fp32_export_passes_the_model_in_memory_and_writes_once(tmp_path, monkeypatch):
    calls = []
    real_load, real_save = onnx.load, onnx.save
    monkeypatch.setattr(onnx, "load", lambda *a, **k: calls.append("load") or real_load(*a, **k))
    monkeypatch.setattr(onnx, "save", lambda *a, **k: calls.append("save") or real_save(*a, **k))
    out = tmp_path / "n.onnx"
    summary = run_export(ExportConfig(output=str(out), input_size=70, random_init=True, check_batch_sizes=(1,)))
    assert calls == []  # no step reads the model back from disk or saves it in between
    assert out.stat().st_size == summary.file_bytes and onnx.load(str(out)).graph.node


def test_flatten_becomes_reshape_with_the_same_outputs(tmp_path):
    from nin_edge.export.steps import flatten_to_reshape

    from tests.conftest import foreign_model

    source = onnx.load(str(foreign_model(tmp_path / "f.onnx")))
    result = flatten_to_reshape(model=source)
    assert result.replaced == 1
    assert [n.op_type for n in result.proto.graph.node] == [
        "Reshape" if n.op_type == "Flatten" else n.op_type for n in source.graph.node
    ]
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    before = ort.InferenceSession(source.SerializeToString()).run(None, {"pixels": x})[0]
    after = ort.InferenceSession(result.proto.SerializeToString()).run(None, {"pixels": x})[0]
    np.testing.assert_array_equal(before, after)
    assert [n.op_type for n in source.graph.node].count("Flatten") == 1  # the input proto is untouched


def test_one_export_reads_its_checkpoint_once_and_a_rewritten_file_again(tmp_path, monkeypatch):
    """The weights, card, split and chance record of --weights come from one torch.load; a file written
    since is read again, and what a caller edits does not reach the next reader."""
    from nin_edge.models import checkpoint as checkpoint_module

    loads: list[str] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda path, **kw: (loads.append(str(path)), real_load(path, **kw))[1])
    checkpoint_module._load.cache_clear()
    weights = tmp_path / "w.pt"
    torch.save({"state_dict": create_model("nin", input_size=67).state_dict(), "recipe": {"epochs": 1}}, weights)
    run_export(ExportConfig(output=str(tmp_path / "m.onnx"), weights=str(weights), input_size=67))
    assert loads == [str(weights.resolve())]
    first = checkpoint_module.read_checkpoint(weights)
    first["recipe"]["epochs"] = 99
    assert checkpoint_module.read_checkpoint(weights)["recipe"] == {"epochs": 1} and len(loads) == 1
    torch.save({"state_dict": {}, "recipe": {"epochs": 2}}, weights)
    os.utime(weights, ns=(1, 1))  # another time stamp, whatever the clock's resolution
    assert checkpoint_module.read_checkpoint(weights)["recipe"] == {"epochs": 2} and len(loads) == 2
