"""nin-bench --peers: the peer registry, interleaved rows, the logit-difference column, missing extras."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np
import pytest
from nin_edge.benchmarks import BenchConfig, run_bench
from nin_edge.benchmarks import bench as bench_module
from nin_edge.benchmarks import peers as peers_module
from nin_edge.benchmarks.bench import PeerRows
from nin_edge.benchmarks.cli import main as bench_cli
from nin_edge.benchmarks.peers import Peer, PeerBuilt, PeerUnsupportedError
from nin_edge.models import create_model, profile_model
from nin_edge.runtime.core.errors import ConfigError

from tests.conftest import assert_one_line_error, run_cli
from tests.test_bench import SIZE, FakeClock

OFFSET = 0.25


def _offset_build(model, batch, precision, threads):
    """A fake peer: nin-edge's reference logits (zeros here) plus OFFSET, or a refusal for 'refused'."""
    if precision == "refused":
        raise PeerUnsupportedError("this CPU cannot do that")
    if precision == "broken":
        raise RuntimeError("converter exploded\nsecond line")
    artifact = model.work_dir / f"{model.name}-{precision}-b{batch}.fake"
    artifact.write_bytes(b"x" * (1000 + batch))
    return PeerBuilt(lambda x: np.full((len(x), 10), OFFSET, dtype=np.float32), artifact)


FAKE = Peer("fake", "peer-fake", ("numpy",), {"fp32": "fp32", "refused": "fp32", "broken": "int8"}, _offset_build, "k")
GHOST = Peer("ghost", "peer-ghost", ("no_such_module_for_nin_edge",), {"fp32": "fp32"}, _offset_build, "k")


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setitem(peers_module.PEERS, "fake", FAKE)
    monkeypatch.setitem(peers_module.PEERS, "ghost", GHOST)


def test_fake_peer_rows_carry_timing_precision_and_logit_difference(registry, monkeypatch, tmp_path):
    monkeypatch.setattr(PeerRows, "reference", lambda self, name, x: np.zeros((len(x), 10)))
    config = BenchConfig(models=("nin",), peers=("fake",), warmup=0, iterations=2, duration=0, pause=0)
    said: list[str] = []
    rows = PeerRows(config, tmp_path, 1, said.append)
    profile = profile_model(create_model("nin", input_size=SIZE))
    clock = FakeClock([1_000_000] * 8)  # every timed run takes 1 ms
    fp32 = rows.measure("nin", "fp32", tmp_path / "nin.onnx", 3, profile, clock)
    assert [(r.backend, r.provider, r.precision, r.batch_size) for r in fp32] == [
        ("fake", "k", "fp32", 3),
        ("fake", "k", "refused", 3),
    ]
    assert fp32[0].p50_ms == pytest.approx(1.0) and fp32[0].max_logit_diff == pytest.approx(OFFSET)
    assert fp32[0].error is None and fp32[0].throughput == pytest.approx(3000)
    assert fp32[0].file_bytes == 1003  # the size of the file the peer built and ran, as in nin-edge's rows
    assert fp32[1].error == "this CPU cannot do that" and fp32[1].p50_ms is None
    (broken,) = rows.measure("nin", "int8", tmp_path / "nin.onnx", 1, profile, clock)
    assert broken.error == "fake could not build it: RuntimeError: converter exploded"
    assert said == [f"nin on peer fake ({p}), batch {b}" for p, b in (("fp32", 3), ("refused", 3), ("broken", 1))]


def test_missing_extra_and_unknown_peer_are_refused_before_work(registry):
    with pytest.raises(ConfigError, match=r"peer 'ghost' is not installed \(no module 'no_such_module_for_nin_edge'\)"):
        BenchConfig(peers=("ghost",)).validate()
    result = run_cli(bench_cli, ["--models", "nin", "--peers", "fake,ghost"])
    assert_one_line_error(result, "peer 'ghost' is not installed", "pip install 'nin-edge[peer-ghost]'")
    result = run_cli(bench_cli, ["--models", "nin", "--peers", "nope"])
    assert_one_line_error(result, "unknown peer 'nope'", "known peers: openvino, executorch, litert")


def test_every_registered_peer_names_its_own_extra():
    assert {name: p.extra for name, p in peers_module.PEERS.items()} == {
        "openvino": "peer-openvino",
        "executorch": "peer-executorch",
        "litert": "peer-litert",
    }
    assert peers_module.PEERS["openvino"].row_precisions(("fp32",)) == ["fp32", "bf16"]
    assert peers_module.PEERS["executorch"].row_precisions(("int8",)) == ["int8"]
    assert peers_module.PEERS["litert"].row_precisions(("int8",)) == []


def _installed(name: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in peers_module.PEERS[name].modules)


#: Largest logit difference from nin-edge FP32 accepted per row precision (NiN at 70 px, shipped weights).
BOUNDS = {"fp32": 1e-4, "bf16": 0.1, "int8": 0.5}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["openvino", "executorch", "litert"])
def test_installed_peer_rows_interleave_with_nin_edge(name, tmp_path, registry):
    if not _installed(name):
        pytest.skip(f"peer {name} is not installed (pip install 'nin-edge[{peers_module.PEERS[name].extra}]')")
    precisions = ("fp32", "int8") if "int8" in peers_module.PEERS[name].precisions.values() else ("fp32",)
    report = run_bench(
        BenchConfig(
            models=("nin",),
            batch_sizes=(1, 2),
            precision=precisions,
            peers=(name,),
            warmup=1,
            iterations=2,
            duration=0,
            pause=0,
            input_size=SIZE,
            cache_dir=str(tmp_path),
        )
    )
    order = [(r.backend, r.precision, r.batch_size) for r in report.results]
    expected = []
    for precision in precisions:
        for batch in (1, 2):
            expected.append(("onnxruntime", precision, batch))
            expected += [(name, p, batch) for p in peers_module.PEERS[name].row_precisions((precision,))]
    assert order == expected
    for row in report.results:
        if row.backend == "onnxruntime":
            assert row.max_logit_diff is not None and row.max_logit_diff < BOUNDS[row.precision]
            assert row.max_logit_diff == 0 or row.precision != "fp32"  # the reference itself
        elif row.backend == name and row.error is None:
            assert row.p50_ms and row.max_logit_diff is not None and row.max_logit_diff < BOUNDS[row.precision]
        elif row.backend == name:
            assert row.precision == "bf16" and "no bf16" in row.error  # the only refusal a peer may give
    assert report.environment["peers"] == {m: importlib.metadata.version(m) for m in peers_module.PEERS[name].modules}


def test_fast_tier_reference_is_nin_edge_fp32(monkeypatch, tmp_path):
    """The reference comes from nin-edge's FP32 export on the CPU provider, once per model and batch."""
    exports, built = [], []
    monkeypatch.setattr(bench_module, "cached_export", lambda *a: exports.append(a) or tmp_path / "fp32.onnx")

    class FakeClassifier:
        def __init__(self, path, provider, threads):
            built.append((path, provider, threads))

        def logits(self, x):
            return x.reshape(len(x), -1)[:, :10] * 2

    monkeypatch.setattr(bench_module, "Classifier", FakeClassifier)
    rows = PeerRows(BenchConfig(input_size=SIZE, calibration_data="synthetic"), tmp_path, 2, lambda m: None)
    x = np.ones((2, 1, SIZE, SIZE), dtype=np.float32)
    assert np.array_equal(rows.reference("nin", x), np.full((2, 10), 2.0))
    rows.reference("nin", x)
    assert exports == [("nin", SIZE, "fp32", tmp_path, "synthetic")]
    assert built == [(tmp_path / "fp32.onnx", "cpu", 2)]
