"""INT8 per machine class: the recipe each CPU class gets, the recorded target, the runtime's
warning, per-class bundles, and the agreement / accuracy-drop gate with its advice."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import onnx
import pytest
from nin_edge.export import ExportConfig, precision
from nin_edge.export import pipeline as pipeline_module
from nin_edge.export.calibration import CalibrationSet
from nin_edge.export.cli import inspect_main
from nin_edge.export.cli import main as export_cli
from nin_edge.export.precision import RECIPES, choose_recipe, fp32_nodes, quantize_int8
from nin_edge.runtime import Classifier
from nin_edge.runtime import int8 as runtime_int8
from nin_edge.runtime.bundle import Bundle
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.session import plain_session

from tests.conftest import assert_one_line_error, run_cli

AVX2 = "fpu sse4_2 avx avx2 fma"
ZEN4 = AVX2 + " avx512f avx512bw avx512_vnni avx512_bf16"
ALDER_LAKE = AVX2 + " avx_vnni"
SAPPHIRE_RAPIDS = ZEN4 + " amx_tile amx_int8 amx_bf16"


@pytest.mark.parametrize(
    ("flags", "machine", "expected"),
    [
        (AVX2, "x86_64", "x86-avx2"),
        (ZEN4, "x86_64", "x86-vnni"),
        (ALDER_LAKE, "x86_64", "x86-vnni"),
        (SAPPHIRE_RAPIDS, "AMD64", "x86-vnni"),
        ("", "x86_64", "x86-avx2"),  # unreadable flags: the class whose models run correctly everywhere
        ("", "aarch64", "arm64"),
        ("", "arm64", "arm64"),
    ],
)
def test_cpu_class_from_flags(flags, machine, expected):
    assert runtime_int8.cpu_class(flags.split(), machine) == expected


def test_cpu_class_reads_the_shared_cpuinfo_reader(monkeypatch):
    # One /proc/cpuinfo reader in the project (runtime.core.cpu.cpu_flags): cpu_class uses it.
    monkeypatch.setattr(runtime_int8, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert runtime_int8.cpu_class(machine="x86_64") == "x86-vnni"
    monkeypatch.setattr(runtime_int8, "cpu_flags", lambda: frozenset({"avx2"}))
    assert runtime_int8.cpu_class(machine="x86_64") == "x86-avx2"


@pytest.mark.parametrize(
    ("flags", "machine", "target", "types", "reduce_range", "layers"),
    [
        # Measured: 7-bit weights and the last block in FP32 pass 99% on AVX2 (99.4%, 1.84x).
        (AVX2, "x86_64", "x86-avx2", "u8s8", True, "last-block"),
        # Measured on the Zen4: full 8-bit weights, last block in FP32 (docs/measured.md, "INT8 recipes per CPU class").
        (ZEN4, "x86_64", "x86-vnni", "u8s8", False, "last-block"),
        (SAPPHIRE_RAPIDS, "x86_64", "x86-vnni", "u8s8", False, "last-block"),
        ("", "aarch64", "arm64", "u8s8", False, "last-block"),
    ],
)
def test_auto_recipe_follows_the_cpu_class(flags, machine, target, types, reduce_range, layers):
    recipe = choose_recipe("auto", flags=flags.split(), machine=machine)
    assert (recipe.target, recipe.types, recipe.reduce_range, recipe.fp32_layers) == (
        target,
        types,
        reduce_range,
        layers,
    )
    assert recipe == RECIPES[target]


def test_explicit_target_ignores_this_machine_and_options_override():
    assert choose_recipe("x86-avx2", flags=ZEN4.split()).reduce_range is True
    assert choose_recipe("x86-vnni", flags=AVX2.split()).reduce_range is False
    trt = choose_recipe("tensorrt", flags=AVX2.split())
    assert (trt.types, trt.reduce_range, trt.fp32_layers) == ("s8s8", False, "none")
    mixed = choose_recipe("x86-avx2", types="u8u8", reduce_range="off", fp32_layers="ends")
    assert (mixed.target, mixed.types, mixed.reduce_range, mixed.fp32_layers) == ("x86-avx2", "u8u8", False, "ends")
    assert "x86-avx2's default; changed by the options given" in mixed.why
    with pytest.raises(ConfigError, match="the tensorrt target needs s8s8"):
        choose_recipe("tensorrt", types="u8s8")
    with pytest.raises(ConfigError, match="int8 target must be one of auto, x86-avx2, x86-vnni, arm64, tensorrt"):
        choose_recipe("x86")
    with pytest.raises(ConfigError, match="int8 fp32 layers must be one of auto, none, last-block, ends"):
        choose_recipe(fp32_layers="first")


def test_old_cpu_target_is_auto_with_a_warning():
    with pytest.warns(FutureWarning, match="int8 target 'cpu' is now 'auto'"):
        recipe = choose_recipe("cpu", flags=AVX2.split(), machine="x86_64")
    assert recipe.target == "x86-avx2"


def test_old_cpu_target_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(export_cli, ["--input-size", 72, "--precision", "int8", "--int8-target", "cpu"])
    assert "warning: --int8-target cpu is now auto" in result.stderr
    assert result.exit_code == 1 and "INT8 needs calibration images" in result.stderr
    assert "cpu" not in run_cli(export_cli, ["--help"]).stdout.split("--int8-target")[1].split("--int8-types")[0]


def test_fp32_layers_rule_on_a_nin_graph(tiny_nin_path):
    model = onnx.load(str(tiny_nin_path))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 12
    # The last NiN block: the three convolutions after the last max-pool.
    assert fp32_nodes(model, "last-block") == tuple(convs[-3:])
    assert fp32_nodes(model, "ends") == (convs[0], *convs[-3:])
    assert fp32_nodes(model, "none") == ()


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory, tiny_nin_path):
    """nin_tiny quantized with the x86-vnni recipe (full 8-bit weights, last block FP32)."""
    out = tmp_path_factory.mktemp("q") / "tiny.int8.onnx"
    images = np.random.default_rng(0).random((8, 1, 224, 224), dtype=np.float32)
    result = quantize_int8(
        fp32_path=tiny_nin_path,
        output=out,
        calibration=CalibrationSet(images, None, "test noise"),
        recipe=RECIPES["x86-vnni"],
    )
    return out, result


def test_int8_model_records_its_target_and_recipe(tiny_int8):
    path, result = tiny_int8
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == "int8" and props["int8_target"] == "x86-vnni"
    recipe = json.loads(props["int8_recipe"])
    assert recipe["types"] == "u8s8" and recipe["reduce_range"] is False and recipe["fp32_layers"] == "last-block"
    assert recipe["fp32_nodes"] == list(result.fp32_nodes) and len(result.fp32_nodes) == 3
    assert 0 < result.fp32_mac_share < 0.05
    # The kept convolutions read FP32 weights; the other nine read dequantized int8 ones.
    produced_by = {out: node for node in model.graph.node for out in node.output}
    weights = {i.name: i for i in model.graph.initializer}
    int8_convs = []
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        source = produced_by.get(node.input[1])
        if node.name in result.fp32_nodes:
            assert node.input[1] in weights and weights[node.input[1]].data_type == onnx.TensorProto.FLOAT
        else:
            assert source is not None and source.op_type == "DequantizeLinear"
            int8_convs.append(node.name)
    assert len(int8_convs) == 9


def test_runtime_warns_where_full_8bit_weights_saturate(tiny_int8, monkeypatch):
    path, _ = tiny_int8
    monkeypatch.setattr(runtime_int8, "cpu_flags", lambda: frozenset(AVX2.split()))
    monkeypatch.setattr(runtime_int8.platform, "machine", lambda: "x86_64")
    with pytest.warns(RuntimeWarning, match="tuned for x86-vnni .* but this CPU is x86-avx2") as caught:
        clf = Classifier(path, "cpu")
    assert "--int8-target x86-avx2" in str(caught[0].message)
    assert "SATURATE" in clf.describe().to_table()
    shown = run_cli(inspect_main, [path, "--no-layers"])
    assert "int8 target" in shown.stdout and "tuned for x86-vnni; this CPU is x86-avx2" in shown.stdout
    assert "WARNING" in shown.stdout


def test_nin_infer_prints_the_warning_once(tiny_int8, monkeypatch, tmp_path):
    from nin_edge.runtime.cli.infer import main as infer_cli

    path, _ = tiny_int8
    monkeypatch.setattr(runtime_int8, "cpu_flags", lambda: frozenset(AVX2.split()))
    monkeypatch.setattr(runtime_int8.platform, "machine", lambda: "x86_64")
    image = tmp_path / "shoe.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    result = run_cli(infer_cli, [path, image, "--provider", "cpu"])
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: model ")
    assert "tuned for x86-vnni (U8S8 with full 8-bit weights), but this CPU is x86-avx2" in lines[0]


def test_runtime_is_quiet_where_the_model_fits(tiny_int8, monkeypatch):
    path, _ = tiny_int8
    monkeypatch.setattr(runtime_int8, "cpu_flags", lambda: frozenset(ZEN4.split()))
    monkeypatch.setattr(runtime_int8.platform, "machine", lambda: "x86_64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = Classifier(path, "cpu")
    assert clf.int8_fit == "tuned for x86-vnni; this CPU is x86-vnni (as tuned)"


@pytest.mark.slow
def test_the_gate_measures_a_foreign_target_with_unfused_qdq(tiny_nin_path, tmp_path, monkeypatch):
    """An AVX2 host cannot run arm64's integer kernels, nor should its own saturating ones judge an arm64
    model: the gate runs the QDQ model unfused (float math on the quantized values) and says so."""
    images = np.random.default_rng(1).random((8, 1, 224, 224), dtype=np.float32)
    out = tmp_path / "tiny.int8.arm64.onnx"
    quantize_int8(
        fp32_path=tiny_nin_path, output=out, calibration=CalibrationSet(images, None, "noise"), recipe=RECIPES["arm64"]
    )
    fp32, int8 = tiny_nin_path.read_bytes(), out.read_bytes()
    calls = []
    monkeypatch.setattr(
        pipeline_module, "unfused_logits", lambda model, x: calls.append(len(x)) or precision.unfused_logits(model, x)
    )

    def gate(cpu_flags: str, machine: str) -> pipeline_module.PrecisionReport:
        monkeypatch.setattr(runtime_int8, "cpu_flags", lambda: frozenset(cpu_flags.split()))
        monkeypatch.setattr(runtime_int8.platform, "machine", lambda: machine)
        return pipeline_module.compare_precision(
            fp32=fp32,
            reduced=int8,
            precision="int8",
            images=CalibrationSet(images, None, "noise"),
            calibration="",
            provider="cpu",
            int8=RECIPES["arm64"],
        )

    with pytest.warns(RuntimeWarning, match="full 8-bit weights"):  # this AVX2 host's own kernels saturate
        report = gate(AVX2, "x86_64")
    assert calls == [8]
    assert report.gate_arithmetic == (
        "Q/DQ unfused (float math on the quantized values), standing in for arm64's integer kernels: "
        "this x86-avx2 CPU's own INT8 kernels are not the target's"
    )
    assert "\ngate arithmetic  Q/DQ unfused (float math" in report.to_table()
    calls.clear()
    report = gate("", "aarch64")  # on arm64 itself, its own kernels
    assert calls == [] and report.gate_arithmetic == "this arm64 CPU's own INT8 kernels (the target's)"
    options = plain_session(int8, unfused_qdq=True).get_session_options()
    assert options.get_session_config_entry("session.disable_quant_qdq") == "1"
    # Unfused, the model is the same model: its logits stay within a few quantization steps of the fused ones.
    fused = Classifier(int8, "cpu").logits(images)
    assert np.abs(precision.unfused_logits(int8, images) - fused).max() < 0.1 * np.abs(fused).max()


def test_gate_arithmetic_rule():
    assert precision.gate_arithmetic(RECIPES["x86-vnni"], "CPUExecutionProvider", "x86-vnni")[0] is False
    assert precision.gate_arithmetic(RECIPES["tensorrt"], "CPUExecutionProvider", "x86-avx2")[0] is False
    assert precision.gate_arithmetic(RECIPES["arm64"], "CUDAExecutionProvider", "x86-avx2") == (
        False,
        "CUDAExecutionProvider's INT8 kernels",
    )
    assert precision.gate_arithmetic(RECIPES["x86-avx2"], "CPUExecutionProvider", "arm64")[0] is True
    full = replace(RECIPES["x86-avx2"], reduce_range=False)  # a foreign target that saturates: said, not hidden
    assert precision.gate_arithmetic(full, "CPUExecutionProvider", "x86-vnni")[1].endswith(
        "; x86-avx2's 16-bit saturation with these full 8-bit weights is not reproduced"
    )


def test_saturation_rule():
    assert runtime_int8.saturates("u8s8", False, "x86-avx2")
    assert runtime_int8.saturates("s8s8", False, "x86-avx2")
    assert not runtime_int8.saturates("u8s8", True, "x86-avx2")  # 7-bit weights
    assert not runtime_int8.saturates("u8u8", False, "x86-avx2")
    assert not runtime_int8.saturates("u8s8", False, "x86-vnni")
    assert not runtime_int8.saturates("u8s8", False, "arm64")
    line, warning = runtime_int8.int8_fit("x86-avx2", {"types": "u8s8", "reduce_range": True}, "x86-vnni")
    assert warning is None and "runs correctly here" in line
    assert runtime_int8.int8_fit("", {}, "x86-avx2")[0].startswith("not recorded")


def _fleet_bundle(tmp_path, keys):
    recipes = {"x86-avx2": RECIPES["x86-avx2"], "x86-vnni": RECIPES["x86-vnni"], "arm64": RECIPES["arm64"]}
    models = {"fp32": {"onnx": "model.onnx"}}
    for t in keys:
        models[f"int8.{t}"] = {
            "onnx": f"model.int8.{t}.onnx",
            "int8_target": t,
            "int8_recipe": recipes[t].metadata(),
        }
    return Bundle(folder=tmp_path, manifest={"models": models})


def test_fleet_bundle_picks_the_int8_model_of_this_cpu(tmp_path):
    bundle = _fleet_bundle(tmp_path, ["x86-avx2", "x86-vnni"])
    assert bundle.int8_key("x86-avx2") == "int8.x86-avx2"
    assert bundle.int8_key("x86-vnni") == "int8.x86-vnni"
    with pytest.warns(RuntimeWarning, match="none for this CPU's class arm64; using model.int8.x86-avx2.onnx"):
        assert bundle.int8_key("arm64") == "int8.x86-avx2"
    # On an AVX2 CPU a bundle without an AVX2 model takes one that does not saturate there.
    only_fast = _fleet_bundle(tmp_path, ["x86-vnni", "arm64"])
    with pytest.warns(RuntimeWarning, match="none for this CPU's class x86-avx2"):
        assert only_fast.int8_key("x86-avx2") == "int8.x86-vnni"
    assert _fleet_bundle(tmp_path, []).int8_key("x86-avx2") is None


def test_fleet_bundle_model_path_uses_this_cpu(tmp_path, monkeypatch):
    import nin_edge.runtime.bundle as runtime_bundle

    monkeypatch.setattr(runtime_bundle, "cpu_class", lambda: "x86-vnni")
    bundle = _fleet_bundle(tmp_path, ["x86-avx2", "x86-vnni"])
    assert bundle.model_path("int8") == tmp_path / "model.int8.x86-vnni.onnx"
    assert bundle.model_path("int8.x86-avx2") == tmp_path / "model.int8.x86-avx2.onnx"


def test_bundle_models_one_per_target():
    from nin_edge.export.targets.bundle import bundle_models

    config = ExportConfig(calibration_data="synthetic")
    models = bundle_models(config, ("fp32", "int8"), ("x86-avx2", "x86-vnni"))
    assert {k: v[0] for k, v in models.items()} == {
        "fp32": "model.onnx",
        "int8.x86-avx2": "model.int8.x86-avx2.onnx",
        "int8.x86-vnni": "model.int8.x86-vnni.onnx",
    }
    assert models["int8.x86-avx2"][1].int8_target == "x86-avx2"
    single = bundle_models(config, ("int8",), ("arm64",))
    assert single["int8"] == ("model.int8.onnx", replace(config, precision="int8", int8_target="arm64"))


def _report(agreement, acc_fp32=None, acc_int8=None):
    return pipeline_module.PrecisionReport(
        precision="int8",
        calibration="minmax",
        eval_images="test split",
        images=1000,
        top1_agreement=agreement,
        max_abs_err=1.0,
        mean_abs_err=0.1,
        accuracy_fp32=acc_fp32,
        accuracy_reduced=acc_int8,
        accuracy_drop_points=None if acc_fp32 is None else 100 * (acc_fp32 - acc_int8),
        fp32_bytes=100,
        reduced_bytes=25,
        provider="CPUExecutionProvider",
        latency_ms={"fp32": {}, "int8": {}},
    )


def test_agreement_gate_error_says_what_to_try():
    config = ExportConfig(precision="int8", calibration_data="synthetic", output="n8.onnx")
    with pytest.raises(CheckFailedError) as info:
        pipeline_module._gate(config, _report(0.988), RECIPES["x86-avx2"])
    text = str(info.value)
    assert text.startswith("int8 model agrees with FP32 on 98.80% of 1000 images, below --min-agreement 0.99; ")
    for hint in (
        "another recipe than x86-avx2's U8S8, reduce_range on, FP32 kept: last-block",
        "--int8-fp32-layers ends",
        "--int8-types u8u8",
        "--calibration-size 600, now 300",
        "--calibration-method entropy|percentile",
        "--min-agreement 0.98",
        "labelled --eval-data with --max-accuracy-drop POINTS",
    ):
        assert hint in text, hint
    pipeline_module._gate(config, _report(0.99), RECIPES["x86-avx2"])  # at the gate: passes
    unfused = replace(_report(0.988), gate_arithmetic="Q/DQ unfused (float math on the quantized values), ...")
    with pytest.raises(CheckFailedError, match=r"below --min-agreement 0.99 \(measured with Q/DQ unfused \(float math"):
        pipeline_module._gate(config, unfused, RECIPES["arm64"])  # the failure says which arithmetic judged it


def test_accuracy_drop_gate():
    config = ExportConfig(
        precision="int8", calibration_data="synthetic", eval_data="data", max_accuracy_drop=0.5, output="n8.onnx"
    )
    # With --max-accuracy-drop the accuracy is the gate: 98.0% agreement passes when accuracy holds.
    assert config.agreement_gate is None
    pipeline_module._gate(config, _report(0.98, 0.917, 0.913), RECIPES["x86-vnni"])
    with pytest.raises(CheckFailedError) as info:
        pipeline_module._gate(config, _report(0.98, 0.917, 0.905), RECIPES["x86-vnni"])
    text = str(info.value)
    assert "loses 1.20 points of accuracy (0.9170 -> 0.9050 on 1000 images), more than --max-accuracy-drop 0.5" in text
    assert "a larger --max-accuracy-drop (now 0.5 points)" in text
    both = replace(config, min_agreement=0.99)
    with pytest.raises(CheckFailedError, match="below --min-agreement 0.99 and loses 1.20 points"):
        pipeline_module._gate(both, _report(0.98, 0.917, 0.905), RECIPES["x86-vnni"])
    with pytest.raises(ConfigError, match=r"needs labels.*give labelled images \(class folders, a manifest or"):
        pipeline_module._gate(config, _report(0.995), RECIPES["x86-vnni"])
    assert ExportConfig().agreement_gate == 0.99


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--max-accuracy-drop", 0.5],
            "--max-accuracy-drop needs labelled images to measure accuracy on: give --eval-data (class folders, a "
            "manifest or a Fashion-MNIST IDX folder)",
        ),
        (["--max-accuracy-drop", -1, "--eval-data", "x"], "max accuracy drop is in points of accuracy, 0 to 100"),
        (["--int8-targets", "x86-avx2,x86-vnni"], "--int8-targets is for --bundle"),
        (["--bundle", "b", "--int8-targets", "x86-avx2"], "--int8-targets needs int8 in --bundle-precisions"),
        (
            ["--precision", "int8", "--calibration-data", "synthetic", "--int8-target", "tensorrt"]
            + ["--int8-types", "u8u8"],
            "the tensorrt target needs s8s8",
        ),
    ],
)
def test_refusals(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli(export_cli, ["--input-size", 72, *args]), message)
    assert list(tmp_path.iterdir()) == []


def test_recipe_table_names_each_class():
    # One home: the help text of --int8-target is made from RECIPES.
    text = run_cli(export_cli, ["--help"]).stdout
    flat = " ".join(text.split())
    for target, recipe in precision.RECIPES.items():
        assert f"{target}: {recipe.describe()}" in flat


@pytest.mark.slow
def test_fleet_bundle_end_to_end(tmp_path, tiny_fashion):
    from nin_edge.export.targets.bundle import write_bundle
    from nin_edge.runtime.int8 import cpu_class

    config = ExportConfig(
        random_init=True,
        input_size=70,
        check_batch_sizes=(1,),
        calibration_data="synthetic",
        calibration_size=16,
        eval_data=str(tiny_fashion),
        eval_size=40,
        min_agreement=0.0,
    )
    folder = tmp_path / "fleet"
    write_bundle(config=config, folder=folder, precisions=("int8",), int8_targets=("x86-avx2", "x86-vnni"))
    names = {p.name for p in folder.iterdir()}
    assert {"model.int8.x86-avx2.onnx", "model.int8.x86-vnni.onnx", "model.int8.x86-avx2.ort"} <= names
    assert "model.int8.onnx" not in names
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest["models"]) == ["fp32", "int8.x86-avx2", "int8.x86-vnni"]
    for target in ("x86-avx2", "x86-vnni"):
        entry = manifest["models"][f"int8.{target}"]
        assert entry["int8_target"] == target
        assert entry["int8_recipe"]["reduce_range"] is (target == "x86-avx2")
        props = {p.key: p.value for p in onnx.load(str(folder / entry["onnx"])).metadata_props}
        assert props["int8_target"] == target
    here = cpu_class()
    clf = Classifier(folder, "cpu", precision="int8")
    assert clf.source.endswith(f"model.int8.{here}.onnx")
    assert clf.describe().int8_fit == f"tuned for {here}; this CPU is {here} (as tuned)"


@pytest.mark.slow
def test_recipe_benchmark_measures_agreement_accuracy_and_speed(tiny_fashion):
    from nin_edge.benchmarks.int8_formats import compare_recipes

    variants = ("U8S8", "U8S8 reduce_range + last block FP32")
    report = compare_recipes(
        calibration_data=str(tiny_fashion),
        eval_data=str(tiny_fashion),
        variants=variants,
        batch=4,
        rounds=1,
        runs=1,
        calibration_size=16,
        eval_size=40,
        input_size=72,
    )
    rows = {r["variant"]: r for r in report.results}
    assert list(rows) == ["FP32", *variants]
    assert rows["FP32"]["agreement"] == 1.0 and rows["FP32"]["speedup_vs_fp32"] == 1.0
    assert all(0 <= r["agreement"] <= 1 and 0 <= r["accuracy"] <= 1 and r["p50_ms_batch4"] > 0 for r in rows.values())
    assert rows["U8S8 reduce_range + last block FP32"]["fp32_layers"] == "last-block"
    assert "test split" in report.evaluation and "INT8 class " in report.machine
    with pytest.raises(ConfigError, match="unknown recipe 'U9'"):
        compare_recipes(calibration_data=str(tiny_fashion), eval_data=str(tiny_fashion), variants=("U9",))


def test_keep_fp32_names_must_exist(tmp_path, tiny_nin_path):
    images = np.random.default_rng(0).random((2, 1, 224, 224), dtype=np.float32)
    with pytest.raises(ConfigError, match="no node named 'nowhere' to keep in FP32"):
        quantize_int8(
            fp32_path=tiny_nin_path,
            output=tmp_path / "q.onnx",
            calibration=CalibrationSet(images, None, "noise"),
            recipe=RECIPES["x86-vnni"],
            keep_fp32=("nowhere",),
        )
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.slow
def test_sensitivity_pass_keeps_one_layer_at_a_time(tiny_fashion):
    from nin_edge.benchmarks.int8_formats import layer_sensitivity

    report = layer_sensitivity(
        calibration_data=str(tiny_fashion), eval_data=str(tiny_fashion), calibration_size=8, eval_size=16, input_size=72
    )
    rows = report.results
    assert rows[0]["fp32_layer"] == "(none: all INT8)" and len(rows) == 13  # all INT8, then each of 12 convolutions
    assert sum(r["mac_share"] for r in rows) == pytest.approx(1.0)
    assert all(0 <= r["agreement"] <= 1 for r in rows)
