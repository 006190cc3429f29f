"""Bulk inference on Ray Data: a local Ray (2 CPUs) gives the same rows as the local engine."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from nin_edge.runtime.cli.infer import main as infer_cli
from PIL import Image

from tests.conftest import run_cli

ray = pytest.importorskip("ray", reason="Ray is in the dev and ray extras")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's tests: starting one takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """1,000 PNG images in two folders, and one file that is not an image."""
    root = tmp_path_factory.mktemp("thousand")
    rng = np.random.default_rng(11)
    for i, image in enumerate(rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8)):
        folder = root / f"part{i % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    (root / "part1" / "broken.png").write_bytes(b"not a png")
    return root


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ray_rows_equal_the_local_engine_and_bad_images_are_error_rows(local_ray, tiny_nin_path, thousand, tmp_path):
    args = [tiny_nin_path, thousand, "--provider", "cpu", "--top-k", 2, "--allow-errors"]
    here = run_cli(infer_cli, [*args, "-o", tmp_path / "local.csv"])
    assert here.exit_code == 0, here.stderr
    there = run_cli(infer_cli, [*args, "-o", tmp_path / "ray.csv", "--engine", "ray", "--actors", 1])
    assert there.exit_code == 0, there.stderr
    assert there.stderr.strip().splitlines()[-1].startswith("1,001 images, 1 error, ")
    local, remote = _rows(tmp_path / "local.csv"), _rows(tmp_path / "ray.csv")
    assert len(local) == len(remote) == 1001
    assert [r["input"] for r in remote] == [r["input"] for r in local]  # same order: Ray keeps it
    for a, b in zip(local, remote, strict=True):
        assert (a["label"], a["index"], a["label_2"], a["error"]) == (b["label"], b["index"], b["label_2"], b["error"])
        if not a["error"]:
            assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=1e-6)
    broken = next(r for r in remote if r["input"].endswith("broken.png"))
    assert "cannot read image" in broken["error"] and broken["label"] == ""
    failed = run_cli(infer_cli, [tiny_nin_path, thousand / "part1", "-o", tmp_path / "r2.csv", "--engine", "ray"])
    assert failed.exit_code == 1 and "1 of 501 images failed" in failed.stderr


def test_the_callable_class_takes_bytes_paths_and_arrays(local_ray, tiny_nin_path, thousand):
    import ray.data
    from nin_edge.runtime import Classifier
    from nin_edge.runtime.ray_data import RayClassifier

    files = sorted((thousand / "part0").glob("*.png"))[:40]
    ds = ray.data.read_binary_files([str(f) for f in files], include_paths=True)
    ds = ds.map_batches(
        RayClassifier,
        fn_constructor_kwargs={"model": tiny_nin_path.read_bytes(), "provider": "cpu"},
        batch_size=16,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
    )
    rows = sorted(ds.take_all(), key=lambda r: r["input"])
    want = Classifier(tiny_nin_path, "cpu").classify(files)
    assert [r["label"] for r in rows] == [p[0].label for p in want]
    assert [r["index"] for r in rows] == [p[0].index for p in want]
    arrays = RayClassifier(str(tiny_nin_path), "cpu")({"image": [np.asarray(Image.open(f)) for f in files[:3]]})
    assert list(arrays["label"]) == [p[0].label for p in want[:3]] and list(arrays["input"]) == [
        "row 0",
        "row 1",
        "row 2",
    ]
