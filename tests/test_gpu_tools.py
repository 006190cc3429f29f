"""GPU diagnostics and GPU measurement tools, checked on a machine without a GPU."""

from __future__ import annotations

import json

import pytest
from nin_edge.benchmarks import gpu_check
from nin_edge.benchmarks.cli import main as bench_cli
from nin_edge.runtime import cuda, profiling
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.providers import CUDA, missing_provider_message

from tests.conftest import assert_one_line_error, run_cli


def _loader(missing: set[str]):
    def load(name: str) -> None:
        if name in missing:
            raise OSError(f"{name}: cannot open shared object file")

    return load


def test_cuda_13_libraries_and_their_wheels():
    libs = {lib.soname: lib for lib in cuda.cuda_libraries(13)}
    assert {"libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudnn.so.9"} <= set(libs)
    assert libs["libcufft.so.12"].optional and libs["libnvrtc.so.13"].optional
    assert libs["libcudnn.so.9"].wheel == "nvidia-cudnn-cu13"
    assert "libcublas.so.12" in {lib.soname for lib in cuda.cuda_libraries(12)}


def test_missing_libraries_skip_optional_ones():
    libs = cuda.cuda_libraries(13)
    missing = cuda.missing_libraries(libs, _loader({"libcudnn.so.9", "libcufft.so.12"}))
    assert [lib.soname for lib in missing] == ["libcudnn.so.9"]
    assert cuda.missing_libraries(libs, _loader(set())) == []


def test_diagnosis_names_both_wheels_when_installed_together(monkeypatch):
    monkeypatch.setattr(
        cuda, "installed_onnxruntime_distributions", lambda: ["onnxruntime 1.32.0", "onnxruntime-gpu 1.31.1"]
    )
    text = cuda.diagnose_cuda(object())
    assert text.startswith("onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1 are installed together")
    assert cuda.GPU_INSTALL in text
    # the missing-provider message says the same before a session is even tried
    monkeypatch.setattr(
        "nin_edge.runtime.providers.installed_onnxruntime_distributions", cuda.installed_onnxruntime_distributions
    )
    assert "are installed together and overwrite each other" in missing_provider_message(CUDA, ["CPUExecutionProvider"])


def test_diagnosis_names_missing_cuda_libraries(monkeypatch, tmp_path):
    (tmp_path / "capi").mkdir()
    (tmp_path / "capi" / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    fake_ort = type("FakeOrt", (), {"__file__": str(tmp_path / "__init__.py")})()
    monkeypatch.setattr(cuda, "installed_onnxruntime_distributions", lambda: ["onnxruntime-gpu 1.31.1"])
    monkeypatch.setattr(cuda, "onnxruntime_cuda_major", lambda: 13)
    text = cuda.diagnose_cuda(fake_ort, load=_loader({"libcudnn.so.9", "libcublasLt.so.13"}))
    assert (
        "built for CUDA 13 and cuDNN 9, but the loader cannot open libcublasLt.so.13 (cuBLASLt (CUDA 13)), "
        "libcudnn.so.9 (cuDNN 9)" in text
    )
    assert "nvidia-cudnn-cu13" in text and "onnxruntime-gpu[cuda,cudnn]" in text
    assert "found its libraries; check the NVIDIA driver" in cuda.diagnose_cuda(fake_ort, load=_loader(set()))
    (tmp_path / "capi" / "libonnxruntime_providers_cuda.so").unlink()
    assert "the CUDA provider library is missing" in cuda.diagnose_cuda(fake_ort, load=_loader(set()))


def test_this_machine_has_a_cpu_build():
    assert cuda.onnxruntime_cuda_major() is None
    assert cuda.diagnose_cuda(object()).startswith("this onnxruntime is a CPU build (onnxruntime 1.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "cpu"], "provider must be a GPU provider (cuda or tensorrt), got 'cpu'"),
        (["--limit", "0"], "--limit and --max-batch must be positive, got 0 and 100"),
        (["--min-agreement", "1.5"], "--min-agreement must lie in 0..1, got 1.5"),
        ([], "execution provider CUDAExecutionProvider is not available"),
    ],
)
def test_gpu_check_refusals(tiny_fashion, tmp_path, args, message):
    result = run_cli(gpu_check.main, ["--data", tiny_fashion, "--cache-dir", tmp_path, *args])
    assert_one_line_error(result, message)


def test_node_profile_summarises_a_trace_and_joins_macs():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 10},
        {
            "cat": "Node",
            "name": "conv_kernel_time",
            "ts": 1,
            "dur": 3000,
            "args": {
                "op_name": "FusedConv",
                "provider": "CPUExecutionProvider",
                "input_type_shape": [{"float": [1, 3, 8, 8]}, {"float": [4, 3, 3, 3]}, {"float": [4]}],
                "output_type_shape": [{"float": [1, 4, 6, 6]}],
            },
        },
        {
            "cat": "Node",
            "name": "relu_kernel_time",
            "ts": 2,
            "dur": 1000,
            "args": {"op_name": "Relu", "provider": "CPUExecutionProvider"},
        },
        {"cat": "Node", "name": "conv_fence_before", "ts": 3, "dur": 999},
    ]
    rows = profiling.summarize_trace(events, runs=2)
    assert [(r.node, r.op, r.ms, r.share) for r in rows] == [
        ("conv", "FusedConv", 1.5, 0.75),
        ("relu", "Relu", 0.5, 0.25),
    ]
    assert rows[0].macs == 4 * 6 * 6 * 3 * 3 * 3  # every output element from C_in x kh x kw products
    assert rows[0].gflop_s == pytest.approx(2 * 3888 / 1.5e6)
    assert rows[1].macs is None and rows[1].gflop_s is None


@pytest.mark.parametrize(
    ("op", "inputs", "outputs", "macs"),
    [
        ("Conv", [(1, 8, 5, 5), (16, 4, 3, 3)], [(1, 16, 5, 5)], 16 * 25 * 4 * 9),  # groups=2: C_in/g = 4
        ("QLinearConv", [(1, 8, 5, 5), (), (), (16, 8, 1, 1)], [(1, 16, 5, 5)], 16 * 25 * 8),
        ("Gemm", [(2, 100), (100, 10)], [(2, 10)], 2 * 10 * 100),
        ("MaxPool", [(1, 8, 4, 4)], [(1, 8, 2, 2)], None),
    ],
)
def test_node_macs(op, inputs, outputs, macs):
    assert profiling.node_macs(op, inputs, outputs) == macs


def test_node_profile_of_a_real_model(tiny_nin_path):
    report = profiling.profile_nodes(str(tiny_nin_path), batch_size=2, runs=3, warmup=1)
    assert report.provider == "CPUExecutionProvider" and report.runs == 3
    assert {r.op for r in report.results} >= {"MaxPool"}
    assert abs(sum(r.share for r in report.results) - 1.0) < 1e-6
    assert report.total_ms > 0
    assert report.placement() == {"CPUExecutionProvider": len(report.results)}
    assert json.loads(report.render("json"))["batch_size"] == 2


def test_node_profile_refusals(tiny_nin_path, tmp_path):
    with pytest.raises(ConfigError, match="provider 'tpu' is not known"):
        profiling.profile_nodes(str(tiny_nin_path), provider="tpu")
    with pytest.raises(ModelFileError, match="does not exist"):
        profiling.profile_nodes(str(tmp_path / "no.onnx"))
    with pytest.raises(ConfigError, match="batch size and runs must be positive"):
        profiling.profile_nodes(str(tiny_nin_path), runs=0)


def test_bench_refuses_an_unknown_cudnn_search():
    result = run_cli(bench_cli, ["--cudnn-conv-algo-search", "FASTEST"])
    assert result.exit_code == 2 and "'FASTEST' is not one of 'HEURISTIC', 'EXHAUSTIVE', 'DEFAULT'" in result.stderr
