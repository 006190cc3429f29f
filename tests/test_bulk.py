"""nin-infer in bulk: every input kind, rows streamed to CSV/JSONL/Parquet, error rows, --resume, kill -9."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from nin_edge.runtime import Classifier
from nin_edge.runtime.bulk import InferConfig, run_infer
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.inputs import expand_inputs
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli, write_idx


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).integers(0, 256, (7, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, images):
    """Images in nested folders, a file that is not an image (skipped by the walk) and upper-case names."""
    root = tmp_path_factory.mktemp("photos")
    (root / "b").mkdir()
    (root / "a" / "deep").mkdir(parents=True)
    names = ["a/deep/x.png", "a/y.PNG", "b/c.jpg", "b/d.png", "z.png"]
    for name, image in zip(names, images, strict=False):
        Image.fromarray(image).save(root / name, quality=100) if name.endswith("jpg") else Image.fromarray(image).save(
            root / name
        )
    (root / "b" / "notes.txt").write_text("not an image")
    return root, names


@pytest.fixture(scope="module")
def clf(tiny_nin_path):
    return Classifier(tiny_nin_path, "cpu")


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_rows_match_classifier(rows: list[dict], clf: Classifier, sources: list) -> None:
    """Each row equals Classifier.classify on its own image, image by image."""
    assert len(rows) == len(sources)
    for row, source in zip(rows, sources, strict=True):
        want = clf.classify(source)[0][0]
        assert row["label"] == want.label and int(row["index"]) == want.index, row
        assert float(row["probability"]) == pytest.approx(want.probability, abs=1e-6)
        assert not row["error"]


def test_a_folder_is_walked_recursively_in_a_stable_order(tiny_nin_path, folder, clf, tmp_path):
    root, names = folder
    out = tmp_path / "out.csv"
    result = run_cli(infer_cli, [tiny_nin_path, root, "--output", out, "--provider", "cpu"])
    assert result.exit_code == 0, result.stderr
    rows = read_rows(out)
    assert [r["input"] for r in rows] == [str(root / n) for n in names]  # notes.txt skipped, names sorted per level
    assert list(rows[0]) == ["input", "label", "index", "probability", "error", "model_sha256"]
    assert_rows_match_classifier(rows, clf, [root / n for n in names])
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("5 images, 0 errors, ") and summary.endswith(f"images/s -> {out}")


def test_glob_patterns_lists_and_stdin(tiny_nin_path, folder, tmp_path):
    root, names = folder
    pattern = run_cli(infer_cli, [tiny_nin_path, f"{root}/**/*.png", "-o", tmp_path / "g.csv"])
    assert pattern.exit_code == 0, pattern.stderr
    assert [r["input"] for r in read_rows(tmp_path / "g.csv")] == sorted(
        str(root / n) for n in names if n.endswith(".png")
    )
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{root / 'z.png'}\n\n{root / 'b/c.jpg'}\n")
    listed = run_cli(infer_cli, [tiny_nin_path, "--from-list", listing, "-o", tmp_path / "l.jsonl"])
    assert listed.exit_code == 0, listed.stderr
    assert [r["input"] for r in read_rows(tmp_path / "l.jsonl")] == [str(root / "z.png"), str(root / "b/c.jpg")]
    piped = CliRunner().invoke(
        infer_cli, [str(tiny_nin_path), "--from-list", "-", "--format", "jsonl"], input=f"{root / 'z.png'}\n"
    )
    assert piped.exit_code == 0, piped.output
    assert [json.loads(line)["input"] for line in piped.stdout.splitlines()] == [str(root / "z.png")]


def test_npy_stacks_and_idx_files(tiny_nin_path, images, clf, tmp_path):
    np.save(tmp_path / "nhw.npy", images[:3])  # (N,H,W): the shape Fashion-MNIST comes in
    np.save(tmp_path / "nhwc.npy", images[3:5, :, :, None])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[5:], gz=True)
    out = tmp_path / "out.jsonl"
    args = [tiny_nin_path, tmp_path / "nhw.npy", tmp_path / "nhwc.npy", tmp_path / "t10k-images-idx3-ubyte.gz"]
    result = run_cli(infer_cli, [*args, "-o", out, "--top-k", 2])
    assert result.exit_code == 0, result.stderr
    rows = read_rows(out)
    assert [r["input"] for r in rows] == [
        *(f"{tmp_path / 'nhw.npy'}[{i}]" for i in range(3)),
        *(f"{tmp_path / 'nhwc.npy'}[{i}]" for i in range(2)),
        *(f"{tmp_path / 't10k-images-idx3-ubyte.gz'}[{i}]" for i in range(2)),
    ]
    assert_rows_match_classifier(rows, clf, list(images))
    second = [clf.classify(image, top_k=2)[0][1] for image in images]
    assert [r["label_2"] for r in rows] == [p.label for p in second]


def test_bad_images_are_error_rows_and_the_exit_status_says_so(tiny_nin_path, folder, tmp_path):
    root, names = folder
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    np.save(tmp_path / "floats.npy", np.zeros((2, 5), np.float64))
    args = [tiny_nin_path, root / "z.png", broken, tmp_path / "floats.npy", root / "b/d.png", "-o", tmp_path / "o.csv"]
    failed = run_cli(infer_cli, args)
    line = assert_one_line_error(failed, "2 of 4 images failed", f"cannot read image '{broken}'", progress=True)
    assert "pass --allow-errors to exit 0" in line
    assert failed.stderr.strip().splitlines()[0].startswith("4 images, 2 errors, ")
    rows = read_rows(tmp_path / "o.csv")
    assert [r["input"] for r in rows] == [
        str(root / "z.png"),
        str(broken),
        str(tmp_path / "floats.npy"),
        str(root / "b/d.png"),
    ]
    assert [bool(r["error"]) for r in rows] == [False, True, True, False]
    assert rows[1]["label"] == "" and "holds float64 (2, 5)" in rows[2]["error"]
    allowed = run_cli(infer_cli, [*args, "--overwrite", "--allow-errors"])
    assert allowed.exit_code == 0 and allowed.stderr.startswith("4 images, 2 errors, ")


def test_options_are_checked_before_any_work(tiny_nin_path, folder, tmp_path):
    root, _ = folder
    (tmp_path / "exists.csv").write_text("input\n")
    cases = [
        ([root / "missing.png"], "input '" + str(root / "missing.png") + "' does not exist"),
        ([f"{root}/*.gif"], "matches no file"),
        ([root, "-o", tmp_path / "out.txt"], "cannot tell the format of output"),
        ([root, "-o", tmp_path / "exists.csv"], "exists; pass --resume"),
        ([root, "--resume"], "--resume and --overwrite need --output FILE"),
        ([root, "-o", tmp_path / "x.csv", "--resume", "--overwrite"], "not both"),
        ([root, "--format", "parquet"], "Parquet cannot be streamed to standard output"),
        ([root, "-o", tmp_path / "no" / "x.csv"], "does not exist; create it first"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli(infer_cli, [tiny_nin_path, *args]), fragment)
    assert (
        "error" not in run_cli(infer_cli, [tiny_nin_path, root, "-o", tmp_path / "x.csv", "--format", "table"]).stdout
    )
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_resume_skips_what_the_output_has_and_appends(tiny_nin_path, folder, clf, tmp_path, suffix):
    root, names = folder
    out = tmp_path / f"out{suffix}"
    first = run_cli(infer_cli, [tiny_nin_path, root / "a", "-o", out])
    assert first.exit_code == 0, first.stderr
    resumed = run_cli(infer_cli, [tiny_nin_path, root, "-o", out, "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stderr.startswith("3 images, 0 errors, 2 skipped (already in the output)")
    rows = read_rows(out)
    assert sorted(r["input"] for r in rows) == sorted(str(root / n) for n in names)
    assert_rows_match_classifier(sorted(rows, key=lambda r: r["input"]), clf, sorted(root / n for n in names))
    other_k = run_cli(infer_cli, [tiny_nin_path, root, "-o", out, "--resume", "--top-k", 3])
    assert_one_line_error(other_k, "it has columns input, label, index, probability, error", "--top-k")


def test_resume_drops_a_row_cut_in_half(tiny_nin_path, folder, tmp_path):
    root, names = folder
    out = tmp_path / "out.csv"
    assert run_cli(infer_cli, [tiny_nin_path, root, "-o", out]).exit_code == 0
    whole = out.read_text()
    out.write_text(whole[: whole.rindex("\n", 0, len(whole) - 1) + 10])  # the last row cut after 9 characters
    resumed = run_cli(infer_cli, [tiny_nin_path, root, "-o", out, "--resume"])
    assert resumed.exit_code == 0 and resumed.stderr.startswith("1 images, 0 errors, 4 skipped")
    assert out.read_text() == whole


def test_formats_from_the_extension_or_format(tiny_nin_path, folder, tmp_path):
    root, _ = folder
    for name, fmt, check in [
        ("o.parquet", None, lambda p: read_rows(p)[0]["index"] is not None),
        ("o.data", "jsonl", lambda p: json.loads(p.read_text().splitlines()[0])["input"]),
        ("o.ndjson", None, lambda p: json.loads(p.read_text().splitlines()[0])["input"]),
    ]:
        args = [tiny_nin_path, root, "-o", tmp_path / name] + (["--format", fmt] if fmt else [])
        assert run_cli(infer_cli, args).exit_code == 0
        assert check(tmp_path / name)
    stdout = run_cli(infer_cli, [tiny_nin_path, root / "z.png", "--format", "csv", "--top-k", 3]).stdout
    header = "input,label,index,probability,label_2,probability_2,label_3,probability_3,error,model_sha256"
    assert stdout.splitlines()[0] == header


def test_the_library_call_keeps_results_without_an_output(tiny_nin_path, folder, clf):
    root, names = folder
    report = run_infer(InferConfig(model=str(tiny_nin_path), inputs=(str(root),), provider="cpu", top_k=2, workers=2))
    assert report.images == 5 and report.errors == 0 and report.decode_workers == 2
    assert [r.input for r in report.results] == [str(root / n) for n in names]
    assert [p.label for p in report.results[0].top] == [p.label for p in clf.classify(root / names[0], top_k=2)[0]]
    assert [item.name for item in expand_inputs([str(root / "b")])] == [str(root / "b/c.jpg"), str(root / "b/d.png")]


@pytest.mark.slow
@pytest.mark.e2e
def test_kill_9_leaves_whole_rows_and_resume_finishes(tiny_nin_path, tmp_path):
    """A real nin-infer process killed with SIGKILL mid-run: the file ends at a whole row; --resume completes it."""
    stack = np.random.default_rng(5).integers(0, 256, (3000, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "stack.npy", stack)
    out = tmp_path / "out.csv"
    command = [str(Path(sys.executable).with_name("nin-infer"))]
    args = [str(tiny_nin_path), str(tmp_path / "stack.npy"), "-o", str(out), "--max-batch", "4", "--provider", "cpu"]
    proc = subprocess.Popen([*command, *args], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = out.read_bytes()
    assert data.endswith(b"\n"), data[-80:]
    rows = list(csv.DictReader(data.decode().splitlines()))
    assert 10 < len(rows) < len(stack), len(rows)
    assert all(r["label"] and r["probability"] for r in rows)
    finished = subprocess.run([*command, *args, "--resume"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    names = [r["input"] for r in read_rows(out)]
    assert sorted(names) == sorted(f"{tmp_path / 'stack.npy'}[{i}]" for i in range(len(stack)))


def test_the_progress_line_shows_rate_and_eta(tiny_nin_path, folder, capsys):
    from nin_edge.runtime.cli.infer import ProgressLine

    root, _ = folder
    progress = ProgressLine(InferConfig(model=str(tiny_nin_path), inputs=(str(root),)))
    deadline = time.monotonic() + 10
    while progress.total is None and time.monotonic() < deadline:
        time.sleep(0.01)
    progress(2, 0.5)
    progress.close()
    assert capsys.readouterr().err.split() == ["2/5", "images", "4.0", "images/s", "ETA", "0:00:00"]


@pytest.mark.slow
@pytest.mark.e2e
def test_sigterm_leaves_a_readable_parquet_file_with_the_rows_so_far(tiny_nin_path, tmp_path):
    pytest.importorskip("pyarrow")
    np.save(tmp_path / "stack.npy", np.random.default_rng(6).integers(0, 256, (30_000, 28, 28), dtype=np.uint8))
    out = tmp_path / "out.parquet"
    infer = str(Path(sys.executable).with_name("nin-infer"))
    proc = subprocess.Popen(
        [infer, str(tiny_nin_path), str(tmp_path / "stack.npy"), "-o", str(out), "--max-batch", "4"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".out.parquet*")):
        time.sleep(0.05)  # imports, model load: the temporary file opens with the first rows due
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and stderr.strip().splitlines()[-1] == "terminated", stderr
    rows = read_rows(out)
    assert 0 < len(rows) < 30_000 and rows[0]["input"] == f"{tmp_path / 'stack.npy'}[0]" and rows[0]["label"]
    assert not list(tmp_path.glob(".out.parquet*"))  # the temporary file became the output


def test_ray_options_without_the_ray_engine_are_refused(tiny_nin_path, folder):
    root, _ = folder
    result = run_cli(infer_cli, [tiny_nin_path, root, "--actors", 2])
    assert result.exit_code == 2 and "--address, --actors and --connect-timeout are for --engine ray" in result.stderr
