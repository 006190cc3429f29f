"""Does the C library answer as the Python runtime does? Fashion-MNIST PNGs through both, compared.

    python runtime/c/check_agreement.py MODEL.onnx IMAGES-idx3-ubyte[.gz] --count 1000 --work DIR

Writes ``count`` test images as 28x28 PNGs and again at the model's input size, then

* runs ``nin-infer MODEL PNG... -o - --format csv --top-k 1`` and ``build/c/nin-classify MODEL PNG...``
  on the 28x28 PNGs (both resize) and compares the CSVs (model_sha256 column included):
  header, top-1, rows identical byte for byte;
* compares logits of ``Classifier.logits`` with the C library's ``nin_logits`` (through ctypes, in a
  child process so that the two onnxruntime copies never share one) on both sets of PNGs.

Prints one line per comparison and exits 1 when top-1 agrees on fewer than ``--min-top1`` of the images
or when the logits at input size differ by more than ``--atol``. Run after ``runtime/c/build.sh``.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BUILD = Path(__file__).resolve().parents[2] / "build" / "c"


class _Image(ctypes.Structure):
    _fields_ = [
        ("pixels", ctypes.c_void_p),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("channels", ctypes.c_int),
        ("stride", ctypes.c_size_t),
    ]


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 1024)]


def c_logits(model: str, paths: list[str], out: str) -> None:
    """The C library's logits for each PNG (read with Pillow, as the Python side reads it), saved as .npy."""
    from PIL import Image

    lib = ctypes.CDLL(str(BUILD / "libnin_edge.so"))
    handle, err = ctypes.c_void_p(), _Error()
    if lib.nin_open(model.encode(), None, ctypes.byref(handle), ctypes.byref(err)) != 0:
        sys.exit(f"error: {err.message.decode()}")
    rows = []
    for path in paths:
        pixels = np.ascontiguousarray(np.asarray(Image.open(path)))
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        image = _Image(pixels.ctypes.data, pixels.shape[1], pixels.shape[0], channels, 0)
        logits = (ctypes.c_float * 1024)()
        if lib.nin_logits(handle, ctypes.byref(image), 1, logits, ctypes.byref(err)) != 0:
            sys.exit(f"error: {err.message.decode()}")
        rows.append(list(logits))
    lib.nin_close(handle)
    np.save(out, np.array(rows, dtype=np.float32))


def read_idx_images(path: Path, count: int) -> np.ndarray:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    n, h, w = (int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, h, w)[:count]


def compare(model: str, images: np.ndarray, work: Path, binary: Path) -> dict:
    """Write the PNGs, run both sides and return the measured agreement."""
    from nin_edge.runtime import Classifier
    from PIL import Image

    clf = Classifier(model, provider="cpu")
    size = clf.input_shape[1]
    small, large = work / "png28", work / f"png{size}"
    small.mkdir(parents=True, exist_ok=True)
    large.mkdir(parents=True, exist_ok=True)
    paths_small, paths_large = [], []
    for i, img in enumerate(images):
        paths_small.append(str(small / f"{i:05d}.png"))
        paths_large.append(str(large / f"{i:05d}.png"))
        Image.fromarray(img).save(paths_small[-1])
        Image.fromarray(img).resize((size, size), Image.BILINEAR).save(paths_large[-1])

    infer = [str(Path(sys.executable).parent / "nin-infer"), model, *paths_small, "-o", "-", "--format", "csv"]
    py_csv = subprocess.run([*infer, "--top-k", "1"], capture_output=True, text=True, check=True).stdout
    c_csv = subprocess.run([str(binary), model, *paths_small], capture_output=True, text=True, check=True).stdout
    (work / "nin-infer.csv").write_text(py_csv)
    (work / "nin-classify.csv").write_text(c_csv)
    py_rows = list(csv.reader(io.StringIO(py_csv)))
    c_rows = list(csv.reader(io.StringIO(c_csv)))
    if [r[0] for r in py_rows] != [r[0] for r in c_rows]:
        raise SystemExit("error: the two CSVs list different inputs")
    body = list(zip(py_rows[1:], c_rows[1:], strict=True))
    top1 = sum(p[2] == c[2] for p, c in body)
    identical = sum(p == c for p, c in body)
    prob = max(abs(float(p[3]) - float(c[3])) for p, c in body if p[2] == c[2])

    result: dict = {"images": len(body), "header_equal": py_rows[0] == c_rows[0], "top1_equal": top1}
    result |= {"rows_identical": identical, "max_probability_diff": prob}
    for name, paths in (("resized", paths_small), ("at_input_size", paths_large)):
        out = work / f"c_logits_{name}.npy"
        code = "import runpy, sys; runpy.run_path(sys.argv[1])['c_logits'](sys.argv[2], sys.argv[4:], sys.argv[3])"
        subprocess.run([sys.executable, "-c", code, __file__, model, str(out), *paths], check=True)
        c = np.load(out)[:, : len(clf.labels)]
        p = clf.logits(paths)
        result[f"max_logit_diff_{name}"] = float(np.abs(c - p).max())
        result[f"top1_equal_logits_{name}"] = int((c.argmax(1) == p.argmax(1)).sum())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("idx", type=Path, help="an IDX images file (Fashion-MNIST t10k-images-idx3-ubyte[.gz])")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--work", type=Path, required=True, help="folder for the PNGs and CSVs")
    parser.add_argument("--binary", type=Path, default=BUILD / "nin-classify")
    parser.add_argument("--min-top1", type=float, default=0.995)
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()
    images = read_idx_images(args.idx, args.count)
    result = compare(args.model, images, args.work, args.binary)
    print(json.dumps(result, indent=1))
    good = result["header_equal"] and result["top1_equal"] >= args.min_top1 * result["images"]
    return 0 if good and result["max_logit_diff_at_input_size"] <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
