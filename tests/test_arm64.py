"""The runtime wheel on arm64, emulated: a Debian bookworm arm64 root under qemu-user (tests/edge/arm64.sh)
answers as x86 does.

The wheel an app developer installs (``pip wheel --no-deps``: no torch) goes into the root beside the
aarch64 wheels of onnxruntime, numpy, Pillow and click; there ``nin-infer`` writes a CSV for a folder of
Fashion-MNIST test images and ``Classifier`` runs the FP32 model and the ``--int8-target arm64`` one.
Answers are compared, never speed (emulated time says nothing of an arm64 CPU). The root is built
once (minutes) in ``${NIN_EDGE_CACHE:-~/.cache/nin-edge}/arm64`` and reused. Where this machine cannot
run aarch64 programs (no binfmt_misc), the test fails with the script's message; it never skips.
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nin_edge.benchmarks.web import write_pngs
from nin_edge.export.cli import main as export_cli
from nin_edge.runtime import Classifier

from tests.conftest import run_cli

pytestmark = [pytest.mark.arm64, pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).parent.parent
SCRIPT = REPO / "tests" / "edge" / "arm64.sh"
#: Fashion-MNIST test images 200-799 (tests/data/edge), or NIN_EDGE_ARM64_DATA's t10k files (e.g. the whole
#: test set): the first NIN_EDGE_ARM64_IMAGES are compared, the last 100 calibrate INT8. CI compares 100 (each
#: emulated FP32 image costs about a second); the recorded proof (docs/edge.md) ran 500 and 1,000.
DATA = Path(os.environ.get("NIN_EDGE_ARM64_DATA") or REPO / "tests" / "data" / "edge")
IMAGES = int(os.environ.get("NIN_EDGE_ARM64_IMAGES", "100"))
CALIBRATION = 100
#: Same onnxruntime, other CPU kernels (NEON against AVX-512): FP32 differs by float rounding alone.
FP32_ATOL = 1e-4


def arm64(*args: str, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    """tests/edge/arm64.sh with ``args``; its output, after asserting it succeeded."""
    done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def root():
    """The arm64 root, built or reused; a machine that cannot run it fails here, saying why."""
    print(arm64("build").stdout)


def fashion_test_images() -> np.ndarray:
    raw = gzip.decompress((DATA / "t10k-images-idx3-ubyte.gz").read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


def runtime_wheel(dest: Path) -> Path:
    """``pip wheel --no-deps`` of the checkout's tracked and unignored files (copied, so that its build/
    folder is left alone)."""
    src = dest / "src"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (dest / "dist").glob("nin_edge-*.whl")
    return wheel


def test_the_runtime_wheel_answers_on_arm64_as_on_x86(root, tmp_path):
    images = fashion_test_images()
    assert IMAGES + CALIBRATION <= len(images), f"{DATA} holds {len(images)} images: set NIN_EDGE_ARM64_IMAGES lower"
    write_pngs(images[:IMAGES], tmp_path / "png")
    np.save(tmp_path / "calibration.npy", images[-CALIBRATION:])
    fp32, int8 = tmp_path / "nin.onnx", tmp_path / "nin.int8.arm64.onnx"
    done = run_cli(export_cli, ["--output", fp32, "--check-batch-sizes", 1])
    assert done.exit_code == 0, done.stderr
    args = ["--precision", "int8", "--int8-target", "arm64", "--calibration-data", tmp_path / "calibration.npy"]
    args += ["--calibration-size", CALIBRATION, "--eval-data", DATA, "--eval-size", IMAGES]
    done = run_cli(export_cli, [*args, "--check-batch-sizes", 1, "--output", int8])
    # This x86 CPU's INT8 kernels are not arm64's: the gate measured arm64's arithmetic (unfused Q/DQ).
    assert done.exit_code == 0, done.stderr
    assert "gate arithmetic  Q/DQ unfused (float math on the quantized values), standing in for arm64's" in done.stdout
    print(done.stdout)
    wheel = runtime_wheel(tmp_path / "wheel")

    here = {m.name: Classifier(m, "cpu").logits(sorted((tmp_path / "png").glob("*.png"))) for m in (fp32, int8)}
    script = f"""
        pip install -q --no-index --no-deps --force-reinstall /proof/wheel/dist/{wheel.name}
        python -c 'import sys, nin_edge.runtime; assert "torch" not in sys.modules; print("no torch")'
        cd /proof
        nin-infer nin.int8.arm64.onnx png --provider cpu --output int8.csv
        python /project/tests/edge/classify.py png arm64.npz nin.onnx nin.int8.arm64.onnx
    """
    shown = arm64("run", "-b", f"{tmp_path}:/proof", "--", "/bin/sh", "-ec", script).stdout
    assert "no torch" in shown, shown
    there = np.load(tmp_path / "arm64.npz")
    assert str(there["machine"]) == "aarch64"
    assert there["names"].tolist() == [f"image-{i:03d}.png" for i in range(IMAGES)]

    a, b = here[fp32.name], there[f"logits:{fp32.name}"]
    assert (a.argmax(1) == b.argmax(1)).all(), np.flatnonzero(a.argmax(1) != b.argmax(1))
    fp32_diff = float(np.abs(a - b).max())
    assert fp32_diff <= FP32_ATOL, fp32_diff
    a8, b8 = here[int8.name], there[f"logits:{int8.name}"]
    assert (a8.argmax(1) == b8.argmax(1)).all(), np.flatnonzero(a8.argmax(1) != b8.argmax(1))
    agreement = float(np.mean(b8.argmax(1) == b.argmax(1)))
    assert agreement >= 0.98, agreement
    labels = Classifier(fp32, "cpu").labels
    with open(tmp_path / "int8.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["input"]).name for r in rows] == there["names"].tolist()
    assert [r["label"] for r in rows] == [labels[i] for i in b8.argmax(1)]
    print(
        f"arm64 ({there['onnxruntime']}) against x86 on {IMAGES} Fashion-MNIST test images: FP32 top-1 equal on all, "
        f"largest logit difference {fp32_diff:.2e}; INT8 (arm64 target) top-1 equal on all, largest logit "
        f"difference {float(np.abs(a8 - b8).max()):.2e}, agreement with FP32 on arm64 {agreement:.2%}"
    )


def test_a_machine_without_binfmt_misc_is_told_why(tmp_path):
    """In a private mount namespace, an empty binfmt_misc (and a `mount` that fails, as in a container)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("mount", "update-binfmts"):
        (fake / tool).write_text("#!/bin/sh\nexit 32\n")
        (fake / tool).chmod(0o755)
    hide = f"mount -t tmpfs tmpfs /proc/sys/fs/binfmt_misc && PATH={fake}:$PATH exec {SCRIPT} build"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", hide], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "error: binfmt_misc has no enabled qemu-aarch64 entry, so this machine cannot run aarch64 programs: "
        "binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc and could not be (a container without binfmt_misc? "
        "run on a host or VM where 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc' works)\n"
    )


def test_nin_classify_cross_built_for_aarch64_writes_nin_infers_csv(root, tmp_path):
    """runtime/c/build.sh --target aarch64's nin-classify, run in the arm64 root, prints the CSV that x86's
    nin-infer prints for the same PNGs (top-1 labels equal, probabilities within 1e-5)."""
    from tests.test_c_api import _assert_same_csv, _build

    _build("--target", "aarch64")
    write_pngs(fashion_test_images()[:IMAGES], tmp_path / "png")
    assert run_cli(export_cli, ["--output", tmp_path / "nin.onnx", "--check-batch-sizes", 1]).exit_code == 0
    names = [f"png/{p.name}" for p in sorted((tmp_path / "png").glob("*.png"))]
    nin_infer = str(Path(sys.executable).parent / "nin-infer")
    x86 = subprocess.run(
        [nin_infer, "nin.onnx", *names, "-o", "-", "--format", "csv", "--top-k", "1", "--provider", "cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script = f"cd /proof && /project/build/c-aarch64/nin-classify nin.onnx {' '.join(names)} > arm64.csv"
    arm64("run", "-b", f"{tmp_path}:/proof", "--", "/bin/sh", "-ec", script)
    _assert_same_csv((tmp_path / "arm64.csv").read_text(), x86)
    print(f"nin-classify on arm64 (cross-built): the CSV of x86's nin-infer on {IMAGES} Fashion-MNIST PNGs")
