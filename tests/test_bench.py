"""nin-bench: statistics on a fake clock, schema of every format, cache reuse, refusals, plot."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import onnxruntime as ort
import pytest
from nin_edge.benchmarks import BenchConfig, measure, measure_interleaved, run_bench, summarize
from nin_edge.benchmarks import bench as bench_module
from nin_edge.benchmarks.cli import main as bench_cli
from nin_edge.models import create_model, profile_model
from nin_edge.runtime import Classifier

from tests.conftest import assert_one_line_error, foreign_model, run_cli

SIZE = 70
TINY = ["--input-size", SIZE, "--iterations", 2, "--duration", 0, "--warmup", 1, "--pause", 0]


class FakeClock:
    """Each reading advances by the next of ``steps`` nanoseconds."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.now = 0

    def __call__(self):
        value = self.now
        self.now += self.steps.pop(0) if self.steps else 0
        return value


def test_interleaved_timing_alternates_order_and_counts_runs():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    ticks = iter(range(0, 10_000_000, 1000))
    times = measure_interleaved(fns, rounds=3, runs=2, warmup=1, clock=lambda: next(ticks))
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}
    assert all(d == 1000 for v in times.values() for d in v)


def test_summarize_refuses_no_timings():
    with pytest.raises(ValueError, match="no timings"):
        summarize([])


def test_summarize_known_durations():
    stats = summarize([1_000_000 * v for v in (4, 1, 3, 2, 10)])  # ms: 1,2,3,4,10
    assert (stats.runs, stats.min_ms, stats.max_ms, stats.p50_ms, stats.mean_ms) == (5, 1, 10, 3, 4)
    assert stats.std_ms == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))
    assert stats.p90_ms == pytest.approx(7.6) and stats.p99_ms == pytest.approx(9.76)


def test_measure_times_only_after_warmup_and_meets_both_minimums():
    calls = []
    # Each timed run reads the clock twice: start (advance 0) and end (advance 5 ms).
    clock = FakeClock([5_000_000, 0] * 100)
    durations = measure(lambda: calls.append(1), warmup=3, min_runs=4, min_seconds=0.0, clock=clock)
    assert len(calls) == 7 and durations == [5_000_000] * 4
    clock = FakeClock([5_000_000, 0] * 100)
    durations = measure(lambda: None, warmup=0, min_runs=2, min_seconds=0.05, clock=clock)
    assert len(durations) == 10  # 10 x 5 ms reach the 50 ms minimum


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def json_report(cache):
    result = run_cli(
        bench_cli,
        [
            "--models",
            "nin,alexnet,vgg11",
            "--batch-sizes",
            "1,3",
            "--torch",
            "--format",
            "json",
            "--cache-dir",
            cache,
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.mark.slow
def test_json_schema_and_figures(json_report):
    report, _ = json_report
    assert set(report) == {"environment", "results"}
    env = report["environment"]
    for key in (
        "cpu",
        "cores",
        "threads",
        "gpu",
        "onnxruntime",
        "torch",
        "nin_edge",
        "providers_available",
        "matmul_peak_gflops",
    ):
        assert key in env
    assert env["matmul_peak_gflops"] > 0
    rows = report["results"]
    assert len(rows) == 3 * 2 * 2  # models x batches x (onnxruntime, torch)
    for row in rows:
        for key in (
            "model",
            "provider",
            "batch_size",
            "params",
            "macs",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "mean_ms",
            "throughput",
        ):
            assert row[key] is not None, (key, row)
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["throughput"] == pytest.approx(row["batch_size"] * 1000 / row["mean_ms"])
        assert row["runs"] >= 2
        profile = profile_model(create_model(row["model"], input_size=SIZE))
        assert (row["params"], row["macs"]) == (profile.params, profile.macs)
    nin = [r for r in rows if r["model"] == "nin"]
    assert all(r["params"] == 1_992_166 and r["vs_nin"] == 1.0 for r in nin)
    ort_rows = [r for r in rows if r["backend"] == "onnxruntime"]
    assert all(r["provider"] == "CPUExecutionProvider" and r["speedup_vs_torch"] > 0 for r in ort_rows)
    assert all(r["file_bytes"] > 0 for r in ort_rows)


@pytest.mark.slow
def test_progress_goes_to_stderr(json_report):
    _, stderr = json_report
    assert "nin on CPUExecutionProvider (fp32), batch 3" in stderr
    assert "vgg11 on PyTorch eager (cpu), batch 1" in stderr


@pytest.mark.slow
def test_cache_is_reused(cache, monkeypatch):
    files = sorted(cache.glob("*.onnx"))
    assert [f.name.split("-")[0] for f in files] == ["alexnet", "nin", "vgg11"]
    stamps = [f.stat().st_mtime_ns for f in files]
    calls = []
    monkeypatch.setattr(bench_module, "run_export", lambda config: calls.append(config))
    report = run_bench(
        BenchConfig(
            models=("nin", "vgg11"),
            batch_sizes=(1,),
            iterations=1,
            duration=0,
            warmup=0,
            input_size=SIZE,
            cache_dir=str(cache),
            pause=0,
        )
    )
    assert calls == [] and [f.stat().st_mtime_ns for f in files] == stamps
    assert [r.model for r in report.results] == ["nin", "vgg11"]
    assert report.results[1].vs_nin == pytest.approx(report.results[1].p50_ms / report.results[0].p50_ms)


@pytest.mark.slow
def test_csv_markdown_table_output_and_plot(cache, tmp_path):
    out, png = tmp_path / "bench.csv", tmp_path / "bench.png"
    args = ["--models", "nin", "--batch-sizes", "1,2", "--cache-dir", cache, *TINY]
    result = run_cli(bench_cli, [*args, "--format", "csv", "--output", out, "--plot", png])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["batch_size"] for r in rows] == ["1", "2"] and float(rows[0]["p50_ms"]) > 0
    assert out.read_text() == result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = run_cli(bench_cli, [*args, "--format", "markdown"]).stdout.splitlines()
    assert md[0].startswith("| model | backend | provider |") and len(md) == 4
    table = run_cli(bench_cli, [*args]).stdout
    assert "matmul peak" in table and "GFLOP/s" in table and "p50_ms" in table


def test_model_path_with_fixed_and_foreign_models(cache, tmp_path):
    foreign = foreign_model(tmp_path / "foreign.onnx", shape=(1, 1, 8, 8), classes=4)  # fixed batch of 1
    report = run_bench(
        BenchConfig(
            models=(),
            model_path=(str(foreign),),
            batch_sizes=(1, 2),
            iterations=1,
            duration=0,
            warmup=0,
            pause=0,
            cache_dir=str(cache),
        )
    )
    one, two = report.results
    assert one.model == "foreign" and one.p50_ms > 0 and one.error is None and one.params is None
    assert two.p50_ms is None and "fixed batch of 1" in two.error


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this build has CUDA")
@pytest.mark.slow
def test_missing_provider_is_refused_unless_fallback(cache):
    args = ["--models", "nin", "--batch-sizes", "1", "--cache-dir", cache, *TINY]
    assert_one_line_error(
        run_cli(bench_cli, [*args, "--provider", "cuda"]),
        "CUDAExecutionProvider is not available",
        "CPUExecutionProvider",
        "--fallback",
    )
    result = run_cli(bench_cli, [*args, "--provider", "tensorrt", "--fallback", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["results"][0]["provider"] == "CPUExecutionProvider"
    assert "warning: execution provider TensorrtExecutionProvider is not available" in result.stderr


@pytest.mark.slow
def test_out_of_memory_is_reported_in_its_row(cache, monkeypatch):
    real = Classifier.logits

    def logits(self, x):
        if len(x) > 1:
            raise RuntimeError(
                "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"
            )
        return real(self, x)

    monkeypatch.setattr(Classifier, "logits", logits)
    report = run_bench(
        BenchConfig(
            models=("nin",),
            batch_sizes=(1, 4),
            iterations=1,
            duration=0,
            warmup=0,
            input_size=SIZE,
            cache_dir=str(cache),
            pause=0,
        )
    )
    assert report.results[0].p50_ms > 0
    assert report.results[1].error == "out of memory at batch 4" and report.results[1].p50_ms is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "lenet"], "unknown model 'lenet'"),
        (["--provider", "tpu"], "provider 'tpu' is not known"),
        (["--precision", "int4"], "precision must be one of fp32, fp16, int8, got 'int4'"),
        (["--models", "nin", "--model-path", "missing.onnx"], "model file 'missing.onnx' does not exist"),
        (["--iterations", "0"], "iterations > 0"),
        (["--output", "/no/such/dir/x.json"], "output folder '/no/such/dir' does not exist"),
    ],
)
def test_refusals(args, message):
    assert_one_line_error(run_cli(bench_cli, args), message)


@pytest.mark.slow
def test_precisions_side_by_side(cache, tiny_fashion):
    report = run_bench(
        BenchConfig(
            models=("nin",),
            precision=("fp32", "int8", "fp16"),
            batch_sizes=(2,),
            iterations=1,
            duration=0,
            warmup=0,
            input_size=SIZE,
            cache_dir=str(cache),
            pause=0,
            calibration_data=str(tiny_fashion),
        )
    )
    assert [r.precision for r in report.results] == ["fp32", "int8", "fp16"]
    assert all(r.p50_ms > 0 and r.error is None for r in report.results)
    fp32, int8, fp16 = report.results
    assert int8.file_bytes < 0.3 * fp32.file_bytes and fp16.file_bytes < 0.6 * fp32.file_bytes
    assert report.environment["int8_calibration"] == str(tiny_fashion)
    assert any("-int8-" in p.name for p in cache.glob("nin-*.onnx"))


@pytest.mark.slow
def test_profile_shows_the_slowest_nodes_with_their_macs(cache, tmp_path):
    from nin_edge.models import create_model, profile_model

    args = ["--models", "nin", "--batch-sizes", "1,2", "--cache-dir", cache, *TINY, "--profile", "--top", 3]
    result = run_cli(bench_cli, [*args, "--format", "json", "--plot", tmp_path / "p.png"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["top"] == 3 and [p["batch_size"] for p in report["profiles"]] == [1, 2]
    one = report["profiles"][0]
    assert one["model"] == "nin fp32" and one["provider"] == "CPUExecutionProvider"
    slowest = one["results"][0]
    assert slowest["ms"] >= one["results"][1]["ms"] and slowest["macs"] > 0 and slowest["gflop_s"] > 0
    # MACs read from the profiler's shapes cover every convolution, fused or not.
    expected = profile_model(create_model("nin", input_size=int(SIZE))).macs
    assert sum(r["macs"] or 0 for r in one["results"]) == pytest.approx(expected, rel=0.01)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run_cli(bench_cli, args).stdout
    assert "nodes take" in table and table.count("Conv") >= 3
    assert_one_line_error(run_cli(bench_cli, [*args, "--top", 0]), "--top and --runs must be positive, got 0")
