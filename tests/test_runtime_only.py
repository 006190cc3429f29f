"""The runtime installed alone (``pip install 'nin-edge[cpu]'``, Pillow included): no torch, onnx or onnxsim.

``.ci/run`` builds that installation in a second virtual environment (a real, non-editable wheel
install) and names its Python in ``NIN_EDGE_RUNTIME_PYTHON``; tests never download anything.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RUNTIME_PYTHON = os.environ.get("NIN_EDGE_RUNTIME_PYTHON")
needs_runtime_venv = pytest.mark.skipif(
    not RUNTIME_PYTHON, reason="NIN_EDGE_RUNTIME_PYTHON is not set (.ci/run builds the runtime-only environment)"
)


@pytest.fixture(scope="module")
def shipped_nin(tmp_path_factory):
    from nin_edge.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("shipped") / "nin.onnx"
    run_export(ExportConfig(output=str(out), check_batch_sizes=(1,)))
    return out


def _real_test_images(folder: Path, count: int) -> tuple[list[Path], list[int]]:
    """The first ``count`` Fashion-MNIST test images of tests/data, written as PNG files."""
    from nin_edge.models.data import read_idx
    from PIL import Image

    data = Path(__file__).parent / "data"
    images = read_idx(data / "t10k-images-idx3-ubyte.gz", 0x803)[:count]
    labels = read_idx(data / "t10k-labels-idx1-ubyte.gz", 0x801)[:count]
    paths = []
    for k, image in enumerate(images):
        paths.append(folder / f"test{k}.png")
        Image.fromarray(image).save(paths[-1])
    return paths, [int(y) for y in labels]


@needs_runtime_venv
def test_the_runtime_alone_classifies_real_test_images_as_the_full_toolkit_does(shipped_nin, tmp_path):
    from nin_edge.runtime import Classifier

    assert RUNTIME_PYTHON is not None
    absent = subprocess.run(
        [
            RUNTIME_PYTHON,
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'onnx', 'onnxsim') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert absent.stdout.strip() == "[]", "the runtime-only environment has toolkit packages"
    paths, labels = _real_test_images(tmp_path, 10)
    infer = Path(RUNTIME_PYTHON).with_name("nin-infer")
    done = subprocess.run(
        [str(infer), str(shipped_nin), *map(str, paths), "--provider", "cpu", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: the installed wheel must be what runs
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    here = Classifier(shipped_nin, "cpu").classify(paths)
    assert [r["top"][0]["label"] for r in results] == [p[0].label for p in here]
    np.testing.assert_allclose(
        [r["top"][0]["probability"] for r in results], [p[0].probability for p in here], atol=1e-5
    )
    names = Classifier(shipped_nin, "cpu").labels
    correct = sum(r["top"][0]["label"] == names[y] for r, y in zip(results, labels, strict=True))
    assert correct >= 8, f"only {correct} of 10 real test images right"


@needs_runtime_venv
def test_toolkit_commands_say_which_extra_they_need(tmp_path):
    assert RUNTIME_PYTHON is not None
    export = Path(RUNTIME_PYTHON).with_name("nin-export")
    done = subprocess.run([str(export), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1,
        "error: nin-export needs torch, which this installation lacks: pip install 'nin-edge[toolkit]'\n",
    )


@needs_runtime_venv
def test_the_runtime_alone_loads_a_verified_bundle(shipped_nin, tmp_path):
    from nin_edge.export import ExportConfig
    from nin_edge.export.targets.bundle import write_bundle

    assert RUNTIME_PYTHON is not None
    write_bundle(config=ExportConfig(check_batch_sizes=(1,)), folder=tmp_path / "bundle", precisions=())
    paths, _ = _real_test_images(tmp_path, 3)
    infer = Path(RUNTIME_PYTHON).with_name("nin-infer")
    run = [str(infer), str(tmp_path / "bundle"), *map(str, paths), "--provider", "cpu", "--format", "json"]
    done = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from_bundle = [r["top"][0]["label"] for r in json.loads(done.stdout)["results"]]
    direct = subprocess.run([*run[:1], str(shipped_nin), *run[2:]], capture_output=True, text=True, cwd=tmp_path)
    assert from_bundle == [r["top"][0]["label"] for r in json.loads(direct.stdout)["results"]]
    (tmp_path / "bundle" / "model.ort").write_bytes(b"changed")
    refused = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 1 and "model.ort' does not match the sha256" in refused.stderr
    assert "Traceback" not in refused.stderr


@needs_runtime_venv
def test_the_runtime_alone_streams_a_folder_to_rows_and_imports_the_ray_adapter(shipped_nin, tmp_path):
    """The main install can classify a folder of image files; the Ray adapter needs neither torch nor Ray to import."""
    assert RUNTIME_PYTHON is not None
    (tmp_path / "photos").mkdir()
    _real_test_images(tmp_path / "photos", 5)
    infer = Path(RUNTIME_PYTHON).with_name("nin-infer")
    done = subprocess.run(
        [str(infer), str(shipped_nin), "photos", "-o", "rows.jsonl", "--provider", "cpu"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("5 images, 0 errors, ")
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == [f"photos/test{k}.png" for k in range(5)] and all(r["label"] for r in rows)
    probe = "import sys, nin_edge.runtime.ray_data; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    imported = subprocess.run([RUNTIME_PYTHON, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert imported.stdout.strip() == "[]", imported.stderr
