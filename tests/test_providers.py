"""Provider planning and the CUDA / TensorRT options, built and checked without a GPU."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from nin_edge.benchmarks.bench import BenchConfig
from nin_edge.benchmarks.gpu_check import GpuCheckConfig
from nin_edge.export import ExportConfig
from nin_edge.models.evaluate import EvalConfig
from nin_edge.runtime.core.errors import ConfigError, ProviderError
from nin_edge.runtime.providers import (
    CPU,
    CUDA,
    OPENVINO,
    PROVIDERS,
    TENSORRT,
    GpuOptions,
    cuda_options,
    engine_cache_path,
    is_gpu,
    parse_provider,
    plan_providers,
    tensorrt_options,
    validate_gpu_options,
)
from nin_edge.runtime.serving.triton import ServeConfig
from nin_edge.runtime.session import RuntimeConfig

from tests.conftest import assert_one_line_error, run_cli

GPU_BUILD = [TENSORRT, CUDA, CPU]
SHA = "ab" * 32


def test_auto_prefers_tensorrt_then_cuda_then_cpu():
    builders = {CUDA: {"device_id": "0"}, TENSORRT: {"trt_fp16_enable": "False"}}
    plan = plan_providers("auto", GPU_BUILD, fallback=False, option_builder=builders)
    assert plan.providers == ((TENSORRT, {"trt_fp16_enable": "False"}), (CUDA, {"device_id": "0"}), (CPU, {}))
    assert plan_providers("auto", [CUDA, CPU], fallback=False).names == [CUDA, CPU]
    assert plan_providers("auto", ["AzureExecutionProvider", CPU], fallback=False).names == [CPU]


@pytest.mark.parametrize(("request_", "names"), [("cpu", [CPU]), ("CUDA", [CUDA, CPU]), ("tensorrt", [TENSORRT, CPU])])
def test_named_requests_keep_cpu_last_for_unsupported_nodes(request_, names):
    assert plan_providers(request_, GPU_BUILD, fallback=False).names == names


def test_explicit_list_with_options_wins_over_builders():
    plan = plan_providers(
        [("cuda", {"device_id": "1"}), "cpu"], GPU_BUILD, fallback=False, option_builder={CUDA: {"device_id": "0"}}
    )
    assert plan.providers == ((CUDA, {"device_id": "1"}), (CPU, {}))
    assert plan.requested == "cuda,cpu"


def test_missing_provider_error_and_fallback():
    with pytest.raises(
        ProviderError,
        match=r"TensorrtExecutionProvider is not available .*"
        r"\(available: CUDAExecutionProvider, CPUExecutionProvider\)",
    ):
        plan_providers("tensorrt", [CUDA, CPU], fallback=False)
    plan = plan_providers([TENSORRT, CUDA], [CUDA, CPU], fallback=True)
    assert plan.names == [CUDA, CPU]
    assert plan.fallback_reason.endswith("falling back to CUDAExecutionProvider")


def test_cuda_options():
    assert cuda_options(GpuOptions()) == {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"}
    assert cuda_options(GpuOptions(device_id=2, cudnn_conv_algo_search="EXHAUSTIVE")) == {
        "device_id": "2",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
    }


def test_tensorrt_profile_precision_and_cache(tmp_path):
    gpu = GpuOptions(fp16=True, max_batch=64, engine_cache_dir=str(tmp_path))
    opts = tensorrt_options(gpu, input_name="input", chw=(1, 224, 224), model_sha256=SHA, ort_version="1.32.0")
    assert opts["trt_profile_min_shapes"] == "input:1x1x224x224"
    assert opts["trt_profile_opt_shapes"] == "input:32x1x224x224"
    assert opts["trt_profile_max_shapes"] == "input:64x1x224x224"
    assert opts["trt_fp16_enable"] == "True" and opts["trt_engine_cache_enable"] == "True"
    cache = opts["trt_engine_cache_path"]
    assert cache.startswith(str(tmp_path)) and f"{SHA[:16]}-fp16-b64-dev0-ort1.32.0-trt" in cache
    assert opts["trt_timing_cache_path"] == cache
    no_cache = tensorrt_options(GpuOptions(), input_name="x", chw=(3, 32, 32), model_sha256=SHA, ort_version="1")
    assert "trt_engine_cache_enable" not in no_cache and no_cache["trt_fp16_enable"] == "False"
    assert no_cache["trt_profile_max_shapes"] == "x:32x3x32x32"


def test_engine_cache_key_changes_with_what_invalidates_an_engine(tmp_path):
    base = GpuOptions(engine_cache_dir=str(tmp_path))
    key = engine_cache_path(tmp_path, SHA, base, "1.32.0")
    assert key == engine_cache_path(tmp_path, SHA, base, "1.32.0")
    others = {
        engine_cache_path(tmp_path, "cd" * 32, base, "1.32.0"),
        engine_cache_path(tmp_path, SHA, GpuOptions(fp16=True), "1.32.0"),
        engine_cache_path(tmp_path, SHA, GpuOptions(max_batch=8), "1.32.0"),
        engine_cache_path(tmp_path, SHA, GpuOptions(device_id=1), "1.32.0"),
        engine_cache_path(tmp_path, SHA, base, "1.33.0"),
    }
    assert key not in others and len(others) == 5


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        (GpuOptions(device_id=-1), "device_id must be a whole number >= 0, got -1"),
        (
            GpuOptions(cudnn_conv_algo_search="fast"),
            "cudnn_conv_algo_search must be one of HEURISTIC, EXHAUSTIVE, DEFAULT",
        ),
        (GpuOptions(max_batch=0), "max_batch must be a positive whole number, got 0"),
    ],
)
def test_gpu_option_validation(gpu, message):
    with pytest.raises(ConfigError, match=message):
        validate_gpu_options(gpu)


def test_option_builders_run_only_for_planned_providers_without_own_options():
    calls = []

    def probe() -> dict:
        calls.append("probe")
        return {"trt_fp16_enable": "True"}

    builders = {TENSORRT: probe}
    assert plan_providers("cuda", GPU_BUILD, fallback=False, option_builder=builders).names == [CUDA, CPU]
    assert plan_providers([(TENSORRT, {"x": "1"})], GPU_BUILD, fallback=False, option_builder=builders).providers[
        0
    ] == (
        TENSORRT,
        {"x": "1"},
    )
    assert plan_providers("tensorrt", [CPU], fallback=True, option_builder=builders).names == [CPU]
    assert calls == []  # not planned, explicit options, or missing: the probe never ran
    plan = plan_providers("tensorrt", GPU_BUILD, fallback=False, option_builder=builders)
    assert plan.providers[0] == (TENSORRT, {"trt_fp16_enable": "True"}) and calls == ["probe"]


# -- one catalogue: every command parses provider names in one place -------------------------------

PACKAGE = Path(__file__).resolve().parents[1]
SPELLINGS = ("CPUExecutionProvider", "cpu", "CPU")


def _package_modules():
    for folder in ("runtime", "models", "export", "benchmarks"):
        yield from (PACKAGE / folder).rglob("*.py")


def test_provider_names_are_parsed_only_in_the_catalogue():
    """No module but the catalogue spells an onnxruntime provider name or compares a provider to a
    literal: a new provider is one entry in runtime/providers.py, and no command can drift."""
    home = {PACKAGE / "runtime" / "providers.py", PACKAGE / "runtime" / "openvino.py"}
    offences = []
    for path in _package_modules():
        if path in home:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.endswith("ExecutionProvider")
            ):
                offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} spells {node.value!r}")
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                names = [ast.unparse(s) for s in sides]
                if any("provider" in n.lower() for n in names) and any(
                    isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides
                ):
                    offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} compares {ast.unparse(node)}")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("InferenceSession"):
                if path != PACKAGE / "runtime" / "session.py":
                    offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} builds an InferenceSession")
    assert offences == []


@pytest.mark.parametrize("spelling", [*SPELLINGS, "CpuExecutionProvider", " cpu "])
def test_every_spelling_of_a_provider_is_the_same_entry(spelling):
    assert parse_provider(spelling).name == CPU
    assert parse_provider("TRT") is parse_provider("TensorrtExecutionProvider")
    assert [e.is_gpu for e in PROVIDERS if e.name in (CPU, CUDA, TENSORRT, OPENVINO)] == [True, True, False, False]


def _configs(tmp_path, provider):
    """Every command's config with ``provider``; all else valid, so only the provider can fail."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    return {
        "nin-infer / Classifier": lambda: RuntimeConfig(provider=provider),
        "nin-export": lambda: ExportConfig(provider=provider, output=str(tmp_path / "n.onnx")),
        "nin-eval": lambda: EvalConfig(data=str(tmp_path), onnx=str(model), provider=provider),
        "nin-bench": lambda: BenchConfig(models=(), model_path=(str(model),), provider=(provider,)),
        "nin-serve": lambda: ServeConfig(model=str(model), provider=provider),
        "profile": lambda: RuntimeConfig(provider=(provider, "cpu")),
    }


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_command_accepts_every_spelling_of_a_provider(tmp_path, spelling):
    for make in _configs(tmp_path, spelling).values():
        make().validate()


def test_every_command_refuses_an_unknown_provider_before_any_work(tmp_path):
    for command, make in _configs(tmp_path, "bogus").items():
        with pytest.raises(ConfigError, match="provider 'bogus' is not known; expected"):
            make().validate()
            pytest.fail(f"{command} accepted provider 'bogus'")
    with pytest.raises(ConfigError, match="provider 'bogus' is not known"):
        GpuCheckConfig(provider="bogus").validate()
    with pytest.raises(ConfigError, match="provider must be a GPU provider"):
        GpuCheckConfig(provider="CPUExecutionProvider").validate()
    assert not (tmp_path / "n.onnx").exists()


def test_openvino_is_not_a_gpu_for_io_binding():
    assert not is_gpu("openvino") and is_gpu("cuda") and is_gpu("TensorrtExecutionProvider")


def _commands():
    from nin_edge.benchmarks.cli import main as bench_cli
    from nin_edge.benchmarks.gpu_check import main as gpu_check_cli
    from nin_edge.benchmarks.serving import main as serving_cli
    from nin_edge.export.cli import main as export_cli
    from nin_edge.models.cli import eval_main
    from nin_edge.runtime.cli.infer import main as infer_cli
    from nin_edge.runtime.cli.serve import main as serve_cli

    return {
        "nin-infer": (infer_cli, lambda m, d, t: [m, t / "x.npy"]),
        "nin-export": (export_cli, lambda m, d, t: ["--output", t / "n.onnx"]),
        "nin-eval": (eval_main, lambda m, d, t: ["--data", d, "--onnx", m]),
        "nin-bench": (bench_cli, lambda m, d, t: ["--model-path", m, "--output", t / "b.json"]),
        "nin-serve": (serve_cli, lambda m, d, t: [m]),
        "gpu_check": (gpu_check_cli, lambda m, d, t: ["--data", d]),
        "serving bench": (serving_cli, lambda m, d, t: [m]),
    }


@pytest.mark.parametrize("command", list(_commands()))
def test_every_command_refuses_an_unknown_provider_in_one_line_before_any_work(
    command, tiny_nin_path, tiny_fashion, tmp_path
):
    cli, args = _commands()[command]
    result = run_cli(cli, [*args(tiny_nin_path, tiny_fashion, tmp_path), "--provider", "bogus"])
    assert_one_line_error(result, "provider 'bogus' is not known; expected")
    assert list(tmp_path.iterdir()) == []  # nothing exported, measured or written


def test_every_spelling_of_the_cpu_provider_gives_the_same_answer(tiny_nin_path, tmp_path):
    from nin_edge.runtime.cli.infer import main as infer_cli

    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8))
    outputs = set()
    for spelling in SPELLINGS:
        result = run_cli(infer_cli, [tiny_nin_path, tmp_path / "x.npy", "--provider", spelling, "--format", "json"])
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)  # less the run's timing, which differs from run to run
        outputs.add(json.dumps({"providers": report["providers"], "results": report["results"]}))
    assert len(outputs) == 1 and CPU in outputs.pop()
