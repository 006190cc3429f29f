"""The one-off measurement tools: runtime overhead, INT8 layouts, serving throughput (tiny settings)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from nin_edge.benchmarks.int8_formats import VARIANTS, compare_formats
from nin_edge.benchmarks.overhead import cold_start, load_times, warm_latency
from nin_edge.runtime.core.errors import ConfigError
from PIL import Image


@pytest.mark.slow
def test_overhead_measures_both_sides(tiny_nin_path):
    bare_ms, runtime_ms = warm_latency(str(tiny_nin_path), blocks=2, runs=2)
    assert bare_ms > 0 and runtime_ms > 0
    (bare_s, bare_mb), (rt_s, rt_mb) = cold_start(str(tiny_nin_path), repeats=1)
    # Each child's own peak: a bare onnxruntime process is far below this test process (torch loaded),
    # whose peak the old ru_maxrss figure reported instead.
    assert bare_s > 0 and rt_s > 0 and 20 < bare_mb < 200 and 20 < rt_mb < 200
    plain_ms, verified_ms = load_times(str(tiny_nin_path), rounds=2)
    assert plain_ms > 0 and verified_ms > 0


@pytest.mark.slow
def test_int8_formats_compares_every_variant(tiny_fashion):
    report = compare_formats(
        calibration_data=str(tiny_fashion), batch_sizes=(2,), rounds=1, runs=1, calibration_size=16, input_size=72
    )
    assert [r["variant"] for r in report.results] == ["FP32", *VARIANTS]
    assert report.results[0]["speedup_vs_fp32"] == 1.0
    assert all(r["p50_ms"] > 0 for r in report.results)
    assert "train split" in report.calibration


@pytest.mark.slow
@pytest.mark.e2e
def test_serving_benchmark_runs_both_modes(tmp_path):
    pytest.importorskip("pytriton", reason="the serve extra is not installed")
    from nin_edge.benchmarks.serving import measure_serving
    from nin_edge.export import ExportConfig, run_export

    model = tmp_path / "nin.onnx"
    run_export(ExportConfig(output=str(model), input_size=72, check_batch_sizes=(1,)))
    report = measure_serving(str(model), clients=(1, 4), seconds=0.5)
    assert [(r.mode, r.clients) for r in report.results] == [
        ("in-process", 1),
        ("in-process", 4),
        ("triton", 1),
        ("triton", 4),
    ]
    assert all(r.requests > 0 and r.requests_per_s > 0 and r.p99_ms >= r.p50_ms for r in report.results)
    assert report.results[2].mean_batch == 1.0
    # every answer was checked against the in-process logits of the same image
    assert all(r.wrong == 0 and r.max_abs_diff < 1e-3 for r in report.results)
    assert report.provider == "CPUExecutionProvider" and "random" in report.inputs


@pytest.mark.slow
def test_data_loading_benchmark_writes_the_folder_once_and_times_idx_files_and_the_cache(tiny_fashion, tmp_path):
    from nin_edge.benchmarks.data_loading import DataLoadingConfig, run_data_loading

    config = DataLoadingConfig(
        data=str(tiny_fashion),
        folder=str(tmp_path / "png"),
        images=40,
        steps=2,
        rounds=1,
        batch_size=8,
        input_size=67,
        workers=0,
    )
    report = run_data_loading(config)
    assert len(list((tmp_path / "png").rglob("*.png"))) == 40 and report.folder_bytes > 0
    idx, png = report.results
    # At least one image of each of the 10 classes is held out for validation.
    assert idx.source == "idx (40 images)" and png.source == "png (30 images)"
    assert all(r.train_samples_per_s > 0 and r.loader_only_samples_per_s > 0 for r in report.results)
    assert "image files train at" in report.to_table()

    # Photo-like JPEGs, and a third source through the decoded cache (filled once, then read).
    cache = tmp_path / "cache"
    photos = replace(config, folder=str(tmp_path / "jpeg"), image_side=96, cache_dir=str(cache))
    report = run_data_loading(photos)
    jpegs = list((tmp_path / "jpeg").rglob("*.jpg"))
    assert len(jpegs) == 40 and Image.open(jpegs[0]).size == (96, 96)
    assert [r.source for r in report.results] == ["idx (40 images)", "jpeg (30 images)", "jpeg + cache (30 images)"]
    assert len(list(cache.rglob("*.npy"))) == 30
    assert "through the cache: loader" in report.to_table()
    with pytest.raises(ConfigError, match="holds images of side 28, not 96; give another --folder"):
        run_data_loading(replace(photos, folder=str(tmp_path / "png")))


def test_serving_benchmark_sends_real_images_through_the_one_loader(tiny_fashion, tiny_nin_path):
    from nin_edge.benchmarks.serving import _inputs
    from nin_edge.runtime import Classifier

    clf = Classifier(tiny_nin_path, "cpu")
    x, described = _inputs(clf, str(tiny_fashion), count=8)
    assert (
        x.shape == (8, *clf.input_shape) and described == f"the first 8 images of the test split of {tiny_fashion.name}"
    )
