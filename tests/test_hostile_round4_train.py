"""Regression tests for the training, data-loading and export cases of issue 30 (hardening round 4):
each one failed before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nin_edge.export.calibration import load_images
from nin_edge.export.cli import main as export_cli
from nin_edge.models.batches import Batches
from nin_edge.models.checkpoint import TrainedCard
from nin_edge.models.cli import train_main
from nin_edge.models.datasets import open_data, shorten
from nin_edge.models.registry import create_model
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.core.metadata import Preprocessing

from tests.conftest import assert_one_line_error, run_cli
from tests.test_datasets import FAST, SIZE, _image

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def classes(root: Path, names: list[str] | tuple[str, ...], per_class: int = 4) -> Path:
    """A class folder per name with ``per_class`` small RGB images, one colour per class."""
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _image(folder / f"{k}_{i}.png", COLOURS[k % 3])
    return root


def checkpoint(path: Path, labels: object, num_classes: int = 2) -> Path:
    """An (untrained) checkpoint whose card says ``labels``: what nin-export reads of a nin-train one."""
    model = create_model("nin", in_channels=1, num_classes=num_classes, input_size=SIZE)
    card = TrainedCard(labels=("a", "b"), in_channels=1, input_size=SIZE, preprocessing=Preprocessing()).to_dict()
    torch.save({"state_dict": model.state_dict(), "card": {**card, "labels": labels}}, path)
    return path


# -- 1. nin-train never replaces a file it did not write ------------------------------------------------------


def test_train_refuses_to_replace_a_model_or_png_it_did_not_write(tiny_nin_path, tmp_path):
    data = classes(tmp_path / "d2", ["blobs", "stripes"])
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(tiny_nin_path.read_bytes())
    result = run_cli(train_main, ["--data", data, *FAST, "--epochs", 1, "--output", victim])
    assert_one_line_error(result, f"'{victim}' exists and is not a nin-train checkpoint", "--overwrite")
    assert victim.read_bytes() == tiny_nin_path.read_bytes()
    best = tmp_path / "run.best.pt"
    best.write_text("my notes")
    result = run_cli(train_main, ["--data", data, *FAST, "--output", tmp_path / "run.pt"])
    assert_one_line_error(result, f"'{best}' exists and is not a nin-train checkpoint")
    picture = tmp_path / "mine.png"
    _image(picture, (1, 2, 3))
    result = run_cli(train_main, ["--data", data, "--input-size", SIZE, "--output", tmp_path / "mine.pt"])
    assert_one_line_error(result, f"'{picture}' exists and is not nin-train's curves PNG")


@pytest.mark.slow
def test_train_replaces_its_own_checkpoint_and_png_and_others_with_overwrite(tiny_nin_path, tmp_path):
    data = classes(tmp_path / "d2", ["blobs", "stripes"])
    plot = [a for a in FAST if a != "--no-plot"]
    out = tmp_path / "run.pt"
    for _ in range(2):  # the second run finds the first run's checkpoint, best and curves: its own
        result = run_cli(train_main, ["--data", data, *plot, "--epochs", 1, "--output", out])
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run.png").is_file() and (tmp_path / "run.best.pt").is_file()
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(tiny_nin_path.read_bytes())
    result = run_cli(train_main, ["--data", data, *FAST, "--epochs", 1, "--output", victim, "--overwrite"])
    assert result.exit_code == 0, result.stderr
    assert torch.load(victim, weights_only=True)["epoch"] == 1


# -- 3. a FIFO (or other special file) is skipped with a count, never opened ---------------------------------


def _run_bounded(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a command line, killed after 60 s: a read that blocks for ever fails the test instead of hanging it."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_fifo_in_a_class_folder_is_skipped_by_train_eval_and_calibration(tmp_path):
    data = classes(tmp_path / "d2", ["blobs", "stripes"])
    os.mkfifo(data / "blobs" / "zz.png")
    bin_dir = Path(sys.executable).parent
    train = [str(bin_dir / "nin-train"), "--data", "d2", *map(str, FAST), "--epochs", "1", "--output", "m.pt"]
    done = _run_bounded(train, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 unreadable image(s) (--strict refuses them): d2/blobs/zz.png (a FIFO, not a regular file)" in (
        done.stdout + done.stderr
    )
    done = _run_bounded([str(bin_dir / "nin-eval"), "--data", "d2", "--weights", "m.pt", "--workers", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    flat = tmp_path / "flat"
    flat.mkdir()
    _image(flat / "a.png", (9, 9, 9))
    os.mkfifo(flat / "b.png")
    script = (
        "from nin_edge.export.calibration import load_images as f\n"
        "print(f('flat', size=67, channels=1, limit=8).source)\n"
        "d2 = f('d2', size=67, channels=1, limit=100)\n"
        "print(len(d2.images))\n"  # the 6 training images of 8
        "print(d2.source)\n"
    )
    done = _run_bounded([sys.executable, "-c", script], tmp_path)
    assert done.returncode == 0, done.stderr
    flat_line, count, folders_line = done.stdout.splitlines()
    assert flat_line == "1 image files from 'flat' (1 entries that are not regular files skipped)"
    assert count == "6"
    assert "d2/blobs/zz.png (a FIFO, not a regular file)" in folders_line, folders_line


# -- 4. wrong answers and misleading errors ------------------------------------------------------------------


def test_eval_data_of_other_classes_is_refused_naming_both_lists(tmp_path):
    data = classes(tmp_path / "cd", ["cats", "dogs"])
    with pytest.raises(ConfigError, match=r"its classes: blobs, stripes; the data's: cats, dogs"):
        load_images(str(data), size=SIZE, channels=1, limit=8, split="test", classes=("blobs", "stripes"))
    with pytest.raises(ConfigError, match="same names in another order"):
        load_images(str(data), size=SIZE, channels=1, limit=8, split="test", classes=("dogs", "cats"))
    same = load_images(str(data), size=SIZE, channels=1, limit=8, split="test", classes=("cats", "dogs"))
    assert same.labels is not None and len(same.labels) == 2


@pytest.mark.slow
def test_export_fp16_with_eval_data_of_other_classes_is_one_line(tmp_path):
    data = classes(tmp_path / "cd", ["cats", "dogs"])
    ckpt = checkpoint(tmp_path / "m2.pt", ["blobs", "stripes"])
    args = ["--weights", ckpt, "--output", tmp_path / "m.onnx", "--precision", "fp16", "--eval-data", data]
    result = run_cli(export_cli, [*args, "--check-batch-sizes", 1])
    assert_one_line_error(
        result, "the model was trained on 2 classes", "its classes: blobs, stripes; the data's: cats, dogs"
    )
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("xy", "its card's labels must be a list of strings (one per class), got 'xy'"),
        (["a", "a"], "its card's labels: the class(es) 'a' appear twice or more; names must differ"),
        (["a", ""], "its card's labels: a class name is empty ('')"),
        (["a", "b\nc"], "its card's labels: the class name 'b\\nc' contains the control character '\\n'"),
    ],
)
def test_card_labels_are_distinct_one_line_strings(tmp_path, labels, message):
    ckpt = checkpoint(tmp_path / "m2.pt", labels)
    result = run_cli(export_cli, ["--weights", ckpt, "--output", tmp_path / "m.onnx", "--triton-repo", tmp_path / "t"])
    assert_one_line_error(result, f"checkpoint '{ckpt}' has an unreadable card: {message}")
    assert not (tmp_path / "t").exists()


def test_a_class_name_with_a_newline_is_refused_in_folders_and_manifests(tmp_path):
    data = classes(tmp_path / "nl", ["a\nb", "c"])
    result = run_cli(train_main, ["--data", data, *FAST, "--output", tmp_path / "x.pt"])
    assert_one_line_error(result, "the class name 'a\\nb' contains the control character '\\n'", progress=True)
    manifest = tmp_path / "nl" / "labels.jsonl"
    rows = [{"path": "c/1_0.png", "label": "x\ty"}, {"path": "c/1_1.png", "label": "z"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=r"the control character '\\t'"):
        open_data(manifest)


def test_manifest_labels_may_be_whole_numbers_but_not_booleans(tmp_path):
    data = classes(tmp_path / "d", ["p", "q"])
    manifest = data / "labels.jsonl"
    rows = [{"path": f"{c}/{k}_{i}.png", "label": k} for k, c in enumerate("pq") for i in range(4)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert open_data(manifest).classes == ("0", "1")
    rows[0]["label"] = False
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        ConfigError, match=r"entry 1: path and label must be text .* got path 'p/0_0.png' and label False"
    ):
        open_data(manifest)


@pytest.mark.parametrize(
    ("option", "wants"),
    [
        ("--init-from", "--init-from takes a PyTorch checkpoint (.pt: nin-train's, or a state_dict) or 'pretrained'"),
        ("--resume", "--resume takes the .pt checkpoint that nin-train wrote for the run"),
    ],
)
def test_an_onnx_model_given_as_a_checkpoint_is_named_as_one(tiny_nin_path, tmp_path, option, wants):
    data = classes(tmp_path / "d2", ["blobs", "stripes"])
    result = run_cli(train_main, ["--data", data, *FAST, "--output", tmp_path / "x.pt", option, tiny_nin_path])
    assert_one_line_error(result, f"'{tiny_nin_path}' is an ONNX model (what nin-export writes)", wants)


def test_one_image_per_class_says_how_many_are_needed(tmp_path):
    data = classes(tmp_path / "one", ["a", "b"], per_class=1)
    result = run_cli(train_main, ["--data", data, *FAST, "--output", tmp_path / "x.pt"])
    assert_one_line_error(result, "each of its 2 classes has a single training image", "at least 2", progress=True)


def test_an_output_below_a_file_names_the_file(tiny_nin_path, tmp_path):
    data = classes(tmp_path / "d2", ["blobs", "stripes"])
    for below in ("x.pt", "sub/x.pt"):
        result = run_cli(train_main, ["--data", data, *FAST, "--output", Path(tiny_nin_path) / below])
        assert_one_line_error(result, "is a regular file, not a folder; give a path inside a folder")
        assert "create it first" not in result.stderr


def test_bundle_and_web_into_the_current_folder_are_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for option in ("--bundle", "--web"):
        result = run_cli(export_cli, ["--random-init", "--input-size", SIZE, option, "."])
        assert_one_line_error(result, "folder '.' is the current folder or holds it")
    assert list(tmp_path.iterdir()) == []
    link = tmp_path.parent / f"{tmp_path.name}-parent-link"
    link.symlink_to(tmp_path.parent)  # the same folder through a link in its path
    result = run_cli(export_cli, ["--random-init", "--input-size", SIZE, "--bundle", str(link / tmp_path.name)])
    assert_one_line_error(result, "is the current folder or holds it")
    link.unlink()
    (tmp_path / "w").mkdir()
    result = run_cli(export_cli, ["--random-init", "--input-size", SIZE, "--output", "w/m.onnx", "--web", "w"])
    assert_one_line_error(result, "the ONNX file 'w/m.onnx' would be written inside the web folder 'w'")
    assert list((tmp_path / "w").iterdir()) == []


# -- 5. no traceback -----------------------------------------------------------------------------------------


def test_superscript_digits_are_class_names_not_numbers(tmp_path):
    data = classes(tmp_path / "sup", ["²", "³", "1"])
    assert open_data(data).classes == ("1", "²", "³")
    numbers = classes(tmp_path / "num", ["10", "9", "٣"])  # an Arabic-Indic 3 is a decimal digit int() reads
    assert open_data(numbers).classes == ("٣", "9", "10")


def test_damaged_cache_entries_are_decoded_afresh_and_said(tmp_path):
    data = open_data(classes(tmp_path / "d2", ["blobs", "stripes"]))
    train = data.split("train")
    options = {"channels": 1, "size": SIZE, "pre": Preprocessing(), "batch_size": 4, "cache": tmp_path / "cache"}
    first = torch.cat([x for x, _ in Batches(train, **options)])
    entries = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == len(train)
    entries[0].write_bytes(b"garbage")
    entries[1].write_bytes(entries[1].read_bytes()[:100])
    np.save(entries[2], np.zeros((1, 2, 2), np.float32))  # a whole .npy of another shape
    batches = Batches(train, **options)
    again = torch.cat([x for x, _ in batches])
    assert torch.equal(first, again)
    note = batches.failure_note()
    assert note is not None and note.startswith("--cache-dir held 3 damaged entr(ies) (truncated or overwritten)")
    assert batches.failure_note() is None  # said once
    assert torch.equal(torch.cat([x for x, _ in Batches(train, **options)]), first)


def test_names_that_are_not_utf8(tmp_path):
    data = classes(tmp_path / "d2", ["blobs", "stripes"])
    raw = os.fsdecode(b"bad\xff.png")
    (data / "blobs" / "0_0.png").rename(data / "blobs" / raw)
    (data / "blobs" / os.fsdecode(b"junk\xfe.png")).write_bytes(b"not an image")
    opened = open_data(data)
    assert sum(len(s) for s in opened.splits.values()) == 8
    note = opened.notes[0]
    assert "junk\\xfe.png" in note
    note.encode("utf-8")  # printable: a terminal can show it
    assert shorten([raw]).endswith("bad\\xff.png")
    (data / "stripes").rename(data / os.fsdecode(b"str\xffipes"))
    result = run_cli(train_main, ["--data", data, *FAST, "--output", tmp_path / "x.pt"])
    assert_one_line_error(result, "contains a byte that is not UTF-8; rename the class", progress=True)


def test_crafted_card_labels_are_refused_by_the_card_parser():
    pre = {"color": "grayscale", "resize": "bilinear", "scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    with pytest.raises(ModelFileError, match="must be a list of strings"):
        TrainedCard.from_dict({"labels": "xy", "in_channels": 1, "input_size": 67, "preprocessing": pre}, "c.pt")


def test_the_web_exports_staging_bundle_is_a_temporary_the_next_run_cleans(tmp_path):
    from nin_edge.runtime.core.files import make_temporary_folder, remove_stale_temporaries

    site = tmp_path / "site"
    staging = make_temporary_folder(site)  # what the web target builds its bundle in
    assert staging.parent == tmp_path and staging.name.startswith(".site.nin-edge-")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process that no longer runs, as a killed export's
    left = staging.rename(tmp_path / staging.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    (left / "bundle").mkdir()
    assert remove_stale_temporaries(site) == [left] and not left.exists()
