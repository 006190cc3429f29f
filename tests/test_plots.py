"""The documentation's charts: drawn from the recorded results the repository keeps, refused on files that are not."""

import json
from pathlib import Path

import pytest
from nin_edge.benchmarks.plots import plot_training_record, read_bench_report
from nin_edge.runtime import ConfigError

REPO = Path(__file__).resolve().parent.parent
CPU_RUN = REPO / "benchmarks" / "results" / "2026-11-26-cpu" / "cpu.json"
SHIPPED_RECORD = REPO / "models" / "weights" / "nin_fashion_mnist.json"


def test_a_recorded_benchmark_reads_back_as_its_report():
    report = read_bench_report(CPU_RUN)
    nin_batch_1 = next(r for r in report.results if (r.model, r.backend, r.batch_size) == ("nin", "onnxruntime", 1))
    # The figure the measured-figures page quotes for this run (4.62 ms).
    assert round(nin_batch_1.p50_ms, 2) == 4.62
    assert {r.model for r in report.results} == {"nin", "alexnet", "vgg11"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", r"cannot read it as JSON .*expected nin-bench --format json output"),
        ("[1, 2]", r"holds a list; expected nin-bench --format json output"),
        ('{"stages": []}', r"has keys \['stages'\]; expected nin-bench --format json output"),
        ('{"environment": {}, "results": [{"model": "nin", "speed": 1}]}', r"a result row does not fit"),
    ],
)
def test_a_file_that_is_not_a_benchmark_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "bench.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_bench_report(path)
    assert str(path) in str(caught.value)


def test_a_training_record_without_stages_is_refused(tmp_path):
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"stages": [{"name": "s1", "history": []}]}))
    with pytest.raises(ConfigError, match=r"stage 1 has no history of epochs"):
        plot_training_record([record], tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_the_shipped_training_record_is_drawn(tmp_path):
    out = tmp_path / "training.png"
    plot_training_record([SHIPPED_RECORD], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
