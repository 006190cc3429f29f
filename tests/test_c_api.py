"""The C API (runtime/c): built with runtime/c/build.sh, driven on real models against nin-infer.

The build needs cmake, gcc and g++ (and the aarch64 cross compilers for the cross build); .ci/run
installs them. Without them these tests skip and say so; with them, any build failure fails.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from nin_edge.runtime import Classifier
from PIL import Image

from tests.conftest import foreign_model, two_class_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "c"
DATA = Path(__file__).parent / "data"
NIN_INFER = str(Path(sys.executable).parent / "nin-infer")


def _missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


@pytest.fixture(scope="module")
def built() -> Path:
    """build/c after one run of runtime/c/build.sh (the downloads are cached in NIN_EDGE_CACHE)."""
    missing = _missing("cmake", "gcc", "g++", "dpkg-deb")
    if missing:
        pytest.skip(f"runtime/c/build.sh needs {', '.join(missing)} (apt-get install cmake gcc g++); .ci/run has them")
    _build()
    return BUILD


def _build(*args: str) -> None:
    """Run runtime/c/build.sh with this venv's python first on PATH (its onnxruntime is linked)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(ROOT / "runtime/c/build.sh"), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _classify(built: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(built / "nin-classify"), *args], capture_output=True, text=True, timeout=300)


def _infer(model: str, *paths: str, top_k: int = 1) -> subprocess.CompletedProcess:
    cmd = [NIN_INFER, model, *paths, "-o", "-", "--format", "csv", "--top-k", str(top_k), "--allow-errors"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _assert_same_csv(c_text: str, py_text: str) -> None:
    """Same header, inputs, labels, indices, errors and model_sha256; probabilities within 1e-5. (Pixels at the
    model's input size give the same tensor bit for bit; a resize rounds in another order than numpy's BLAS.)"""
    c_rows, py_rows = _rows(c_text), _rows(py_text)
    assert c_rows[0] == py_rows[0] and c_rows[0][-1] == "model_sha256"
    assert len(c_rows) == len(py_rows)
    for c, p in zip(c_rows[1:], py_rows[1:], strict=True):
        for name, c_value, py_value in zip(c_rows[0], c, p, strict=True):
            if name.startswith("probability") and c_value:
                assert float(c_value) == pytest.approx(float(py_value), rel=1e-5, abs=1e-6), (c, p)
            else:
                assert c_value == py_value, (c, p)


def _fashion_pngs(folder: Path, count: int) -> list[str]:
    from nin_edge.runtime.core.files import IMAGES_MAGIC, read_idx

    images = read_idx(DATA / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC)[:count]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(str(folder / f"{i:03d}.png"))
        Image.fromarray(img).save(paths[-1])
    return paths


def _bundle(folder: Path, model: Path) -> Path:
    """A bundle folder as runtime/bundle.py reads it: model.onnx listed in manifest.json with its sha256."""
    folder.mkdir()
    shutil.copy(model, folder / "model.onnx")
    data = (folder / "model.onnx").read_bytes()
    manifest = {
        "format": "nin-edge-bundle",
        "format_version": 1,
        "files": {"model.onnx": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
        "models": {"fp32": {"onnx": "model.onnx"}},
        "labels": [],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def shipped_nin(tmp_path_factory) -> Path:
    """The shipped 10-class NiN (trained weights), exported by nin-export."""
    from nin_edge.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("shipped") / "nin.onnx"
    run_export(ExportConfig(output=str(out), check_batch_sizes=(1,)))
    return out


def test_the_api_error_codes(built, tmp_path):
    not_a_model = tmp_path / "not_a_model.onnx"
    not_a_model.write_text("hello")
    (tmp_path / "empty").mkdir()
    args = [str(DATA / "nin_tiny.onnx"), str(foreign_model(tmp_path / "foreign.onnx")), str(not_a_model)]
    args.append(str(tmp_path / "empty"))
    done = subprocess.run([str(built / "test_nin_errors"), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    passed, total = done.stdout.split()[0], done.stdout.split()[2]
    assert passed == total and int(total) >= 30


@pytest.mark.parametrize("program", ["test_nin_cpp17", "test_nin_cpp20"])
def test_the_cpp_wrapper(built, program):
    done = subprocess.run([str(built / program), str(DATA / "nin_tiny.onnx")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert ("std::span overloads built" in done.stdout) == program.endswith("20")


def test_csv_equals_nin_infer_on_the_shipped_nin(built, shipped_nin, tmp_path):
    paths = _fashion_pngs(tmp_path / "png", 40)
    # Other layouts the Python runtime reads: RGB, RGBA, grey + alpha, 16-bit grey, another size.
    grey = np.asarray(Image.open(paths[0]))
    Image.fromarray(np.stack([grey, grey // 2, 255 - grey], axis=2)).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 7)])).save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([grey, np.full_like(grey, 99)]), mode="LA").save(tmp_path / "la.png")
    Image.fromarray(grey.astype(np.uint16) * 257 + 3).save(tmp_path / "grey16.png")
    Image.fromarray(grey).resize((50, 37), Image.BILINEAR).save(tmp_path / "odd,size.png")
    paths += [str(tmp_path / n) for n in ("rgb.png", "rgba.png", "la.png", "grey16.png", "odd,size.png")]
    for top_k in (1, 3):
        c = _classify(built, "--top-k", str(top_k), str(shipped_nin), *paths)
        py = _infer(str(shipped_nin), *paths, top_k=top_k)
        assert c.returncode == 0 and py.returncode == 0, c.stderr + py.stderr
        _assert_same_csv(c.stdout, py.stdout)
        assert {row[-1] for row in _rows(c.stdout)[1:]} == {Classifier(shipped_nin).sha256[:16]}
    assert '"' + str(tmp_path / "odd,size.png") + '"' in c.stdout  # quoted as csv.writer quotes
    # JPEG: stb_image's decoder is not libjpeg's, so pixels may differ by a level; a clear image keeps its class.
    Image.fromarray(grey).save(tmp_path / "shoe.jpg", quality=95)
    c = _classify(built, str(shipped_nin), str(tmp_path / "shoe.jpg"))
    py = _infer(str(shipped_nin), str(tmp_path / "shoe.jpg"))
    assert c.returncode == 0 and _rows(c.stdout)[1][:3] == _rows(py.stdout)[1][:3] == [
        str(tmp_path / "shoe.jpg"),
        "Ankle boot",
        "9",
    ]


def test_csv_equals_nin_infer_on_a_two_class_rgb_model_and_a_bundle(built, tmp_path):
    model = two_class_model(tmp_path / "two.onnx")
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h, c) in enumerate([(16, 16, 3), (40, 23, 3), (9, 30, 1), (16, 16, 4)]):
        pixels = rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    c = _classify(built, "--top-k", "2", str(model), *paths)
    py = _infer(str(model), *paths, top_k=2)
    assert c.returncode == 0, c.stderr
    _assert_same_csv(c.stdout, py.stdout)
    at_size = [row for row in _rows(c.stdout) if row[0] in (paths[0], paths[3])]
    assert at_size == [row for row in _rows(py.stdout) if row[0] in (paths[0], paths[3])]  # 16x16: same bytes

    bundle = _bundle(tmp_path / "bundle", DATA / "nin_tiny.onnx")
    c = _classify(built, str(bundle), *paths)
    assert c.returncode == 0, c.stderr
    _assert_same_csv(c.stdout, _infer(str(bundle), *paths).stdout)
    with open(bundle / "model.onnx", "ab") as fh:  # altered after the manifest was written
        fh.write(b"\0")
    c = _classify(built, str(bundle), *paths)
    assert c.returncode == 1 and c.stdout == ""
    assert c.stderr == (
        f"error: bundle file '{bundle}/model.onnx' does not match the sha256 in its manifest: it was altered or "
        "truncated; copy the bundle again\n"
    )


def test_model_sha256_covers_external_data_as_the_python_runtime_does(built, tmp_path):
    """A model with its weights in an external file: the model_sha256 column is Classifier.sha256's, not the
    .onnx file's sha256 (which would not change when the weights do)."""
    model = onnx.load(str(DATA / "nin_tiny.onnx"))
    external = tmp_path / "external.onnx"
    onnx.save(model, str(external), save_as_external_data=True, location="weights.bin", size_threshold=0)
    png = _fashion_pngs(tmp_path / "png", 2)
    c, py = _classify(built, str(external), *png), _infer(str(external), *png)
    assert c.returncode == 0 and py.returncode == 0, c.stderr + py.stderr
    _assert_same_csv(c.stdout, py.stdout)
    digest = _rows(c.stdout)[1][-1]
    assert digest == Classifier(external).sha256[:16] != hashlib.sha256(external.read_bytes()).hexdigest()[:16]
    weights = bytearray((tmp_path / "weights.bin").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "weights.bin").write_bytes(bytes(weights))
    assert _rows(_classify(built, str(external), *png).stdout)[1][-1] not in (digest, "")


def test_bad_inputs_give_one_error_line_and_exit_1(built, tmp_path):
    good = _fashion_pngs(tmp_path / "png", 1)[0]
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    model = str(DATA / "nin_tiny.onnx")

    c = _classify(built, model, good, str(not_image), str(tmp_path / "missing.png"))
    assert c.returncode == 1
    rows = _rows(c.stdout)
    missing = tmp_path / "missing.png"
    unknown = f"cannot read image '{not_image}': Image not of any known type, or corrupt"
    digest = hashlib.sha256((DATA / "nin_tiny.onnx").read_bytes()).hexdigest()[:16]
    assert rows[2] == [str(not_image), "", "", "", unknown, digest]
    assert rows[3] == [str(missing), "", "", "", f"image file '{missing}' does not exist", digest]
    # nin-infer's error row has the same shape: empty fields, the error, the model (the reason is Pillow's, not
    # stb_image's). A missing file nin-infer refuses before it starts, so it is left out here.
    py_rows = _rows(_infer(model, good, str(not_image)).stdout)
    assert [row[:4] + row[5:] for row in py_rows] == [row[:4] + row[5:] for row in rows[:3]]
    assert py_rows[2][4].startswith(f"cannot read image '{not_image}': ")
    assert c.stderr.count("\n") == 1 and c.stderr.startswith("error: 2 of 3 images failed (first: cannot read image")

    foreign = foreign_model(tmp_path / "foreign.onnx")
    c = _classify(built, str(foreign), good)
    assert (c.returncode, c.stdout) == (1, "")
    assert c.stderr == (
        f"error: model '{foreign}' has no nin-edge metadata (model, input_size, in_channels, labels missing); "
        "export it with nin-export\n"
    )
    c = _classify(built, str(not_image), good)
    assert c.returncode == 1
    assert c.stderr.startswith(f"error: cannot load model '{not_image}': it is not a valid ONNX model (onnxruntime: ")
    c = _classify(built, str(tmp_path / "nope.onnx"), good)
    assert c.stderr == f"error: model file '{tmp_path / 'nope.onnx'}' does not exist or is not a file\n"
    c = _classify(built, "--top-k", "11", model, good)
    too_many = "error: --top-k must be a whole number from 1 to 10 (this model has 10 classes), got 11\n"
    assert (c.returncode, c.stderr) == (1, too_many)


def test_agreement_with_the_python_runtime_on_fashion_mnist(built, shipped_nin, tmp_path):
    """runtime/c/check_agreement.py on the 200 test images of tests/data (the report's run used 1,000)."""
    script = ROOT / "runtime" / "c" / "check_agreement.py"
    cmd = [sys.executable, str(script), str(shipped_nin), str(DATA / "t10k-images-idx3-ubyte.gz")]
    done = subprocess.run([*cmd, "--count", "200", "--work", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["header_equal"] and result["top1_equal"] >= 199
    assert result["max_logit_diff_at_input_size"] <= 1e-4
    assert result["max_probability_diff"] <= 1e-12


def test_the_aarch64_cross_build(built):
    missing = _missing("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++")
    if missing:
        pytest.skip(f"the aarch64 build needs {', '.join(missing)} (apt-get install gcc-aarch64-linux-gnu g++-...)")
    _build("--target", "aarch64")
    out = ROOT / "build" / "c-aarch64"
    for name in ("nin-classify", "libnin_edge.so", "libonnxruntime.so.1"):
        header = (out / name).read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183, name  # EM_AARCH64


@pytest.mark.parametrize("classes", [10, 2])
def test_the_model_cards_c_example_builds_and_runs(built, tmp_path, classes):
    """The card's C example, as the card of a 10-class and of a 2-class model writes it (top-k min(3, C))."""
    from nin_edge.export.bundle_card import c_card_example

    model = DATA / "nin_tiny.onnx" if classes == 10 else two_class_model(tmp_path / "two.onnx")
    body = c_card_example(min(3, classes)).split("```c\n")[1].split("```")[0].replace('#include "nin_edge.h"\n', "")
    bundle = _bundle(tmp_path / "bundle", model)
    source = tmp_path / "card.c"
    source.write_text(
        '#include <stdint.h>\n#include <stdio.h>\n#include "nin_edge.h"\n'
        "int main(void) {\n    static uint8_t pixels[30 * 20];\n    int width = 30, height = 20;\n"
        + body.replace("BUNDLE_DIR", str(bundle))
        + "    return 0;\n}\n"
    )
    program = tmp_path / "card"
    cmd = ["gcc", "-std=c11", "-Wall", "-Werror", f"-I{ROOT / 'runtime/c/include'}", str(source), "-o", str(program)]
    subprocess.run([*cmd, f"-L{built}", "-lnin_edge", f"-Wl,-rpath,{built}"], check=True)
    done = subprocess.run([str(program)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    label, probability = done.stdout.rsplit(" ", 1)
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert label in json.loads(props["labels"])
    assert 1 / classes <= float(probability) <= 1
