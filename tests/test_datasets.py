"""The one data loader (--data): class folders, manifests, IDX; bad data answered up front; the card
travelling from the data through the checkpoint and the ONNX metadata to nin-infer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from nin_edge.export.cli import main as export_cli
from nin_edge.models.batches import Batches
from nin_edge.models.cli import eval_main, train_main
from nin_edge.models.datasets import open_data
from nin_edge.models.registry import create_model
from nin_edge.models.train import TrainConfig, train
from nin_edge.models.train_checkpoint import init_from
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.infer import main as infer_main
from nin_edge.runtime.core.errors import ConfigError, InputError
from nin_edge.runtime.core.metadata import Preprocessing
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli

CLASSES = ("bolt", "nut", "washer")
SIZE = 67  # NiN's smallest input keeps the runs fast
FAST = ["--input-size", SIZE, "--batch-size", 8, "--optimizer", "adamw", "--lr", "1e-3", "--no-plot", "--workers", 0]


def _image(path: Path, colour: tuple[int, int, int], mode: str = "RGB", side: int = 12) -> None:
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (side, side, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(path)


def make_folder(root: Path, per_class: int = 6, layout: str = "flat") -> Path:
    """A tiny RGB image folder, one colour per class; ``layout`` flat or split (train/ and val/)."""
    colours = {"bolt": (200, 40, 40), "nut": (40, 200, 40), "washer": (40, 40, 200)}
    for name, colour in colours.items():
        for i in range(per_class):
            split = "" if layout == "flat" else ("val" if i < 2 else "train")
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            _image(folder / f"{name}{i}.png", colour)
    return root


def make_manifest(root: Path, suffix: str = ".csv") -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for k, name in enumerate(CLASSES):
        for i in range(5):
            _image(images / f"{name}{i}.png", [(200, 40, 40), (40, 200, 40), (40, 40, 200)][k])
            rows.append((f"images/{name}{i}.png", name))
    path = root / f"labels{suffix}"
    if suffix == ".csv":
        path.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    else:
        path.write_text("".join(json.dumps({"path": p, "label": lab}) + "\n" for p, lab in rows))
    return path


def test_calibration_and_evaluation_images_follow_the_checkpoints_split(tmp_path):
    from nin_edge.export.calibration import load_images

    data = make_folder(tmp_path / "parts", per_class=6)
    record = {"val_fraction": 0.34, "seed": 3}
    held = load_images(str(data), size=SIZE, channels=3, limit=100, split="test", split_record=record)
    default = load_images(str(data), size=SIZE, channels=3, limit=100, split="test")
    assert len(held.images) == 6 and len(default.images) == 3
    expected = open_data(data, **record).split("val")
    assert sorted(held.labels.tolist()) == sorted(expected.labels.tolist())
    calib = load_images(str(data), size=SIZE, channels=3, limit=100, split="train", split_record=record)
    assert len(calib.images) == 12  # the rest: never the held-out images
    assert held.card_note == "6 images sampled across classes from the val split of the evaluation data (class folders)"
    assert str(tmp_path) in held.source and str(tmp_path) not in held.card_note


# -- layouts -----------------------------------------------------------------------------------------


def test_flat_folder_gets_a_stratified_seeded_split(tmp_path):
    data = open_data(make_folder(tmp_path, per_class=10), val_fraction=0.2, seed=3)
    assert data.kind == "folder" and data.classes == CLASSES and data.channels == 3
    assert np.bincount(data.split("val").labels).tolist() == [2, 2, 2]
    assert np.bincount(data.split("train").labels).tolist() == [8, 8, 8]
    again = open_data(tmp_path, val_fraction=0.2, seed=3)
    assert again.split("val").paths == data.split("val").paths
    assert again.split_record == data.split_record and "val_sha256" in data.split_record
    other = open_data(tmp_path, val_fraction=0.2, seed=4)
    assert other.split_record["val_sha256"] != data.split_record["val_sha256"]


def test_train_val_layout_is_used_as_given(tmp_path):
    data = open_data(make_folder(tmp_path, layout="split"))
    assert len(data.split("train")) == 12 and len(data.split("val")) == 6
    assert data.split_record == {"kind": "folder"}  # nothing was split, nothing to record


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest(tmp_path, suffix):
    data = open_data(make_manifest(tmp_path, suffix))
    assert data.kind == "manifest" and data.classes == CLASSES and len(data.split("val")) == 3


def test_numeric_labels_sort_as_numbers(tmp_path):
    for name in ("2", "10", "1"):
        (tmp_path / name).mkdir()
        for i in range(2):
            _image(tmp_path / name / f"{i}.png", (int(name) * 20, 2, 3))
    assert open_data(tmp_path).classes == ("1", "2", "10")


def test_grey_images_give_one_channel_unless_asked(tmp_path):
    for k, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for i in range(2):
            _image(tmp_path / name / f"{i}.png", (90 + 50 * k,) * 3, mode="L")
    assert open_data(tmp_path).channels == 1
    assert open_data(tmp_path, channels=3).channels == 3


def test_batches_stream_model_ready_tensors(tmp_path):
    data = open_data(make_folder(tmp_path))
    pre = Preprocessing(color="rgb", mean=(0.0,) * 3, std=(1.0,) * 3)
    batches = Batches(data.split("train"), channels=3, size=20, pre=pre, batch_size=4, workers=1)
    xs = [x for x, _ in batches]
    assert xs[0].shape == (4, 3, 20, 20) and xs[0].dtype == torch.float32
    assert sum(len(x) for x in xs) == len(data.split("train")) and 0 <= float(xs[0].min()) <= float(xs[0].max()) <= 1


# -- bad data ----------------------------------------------------------------------------------------


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"class folder '.*empty' holds no images"):
        open_data(tmp_path)


def test_single_class(tmp_path):
    (tmp_path / "only").mkdir()
    _image(tmp_path / "only" / "a.png", (1, 2, 3))
    with pytest.raises(ConfigError, match="has a single class \\(only\\); a classifier needs at least two"):
        open_data(tmp_path)


def test_class_only_in_val(tmp_path):
    make_folder(tmp_path, layout="split")
    (tmp_path / "val" / "screw").mkdir()
    _image(tmp_path / "val" / "screw" / "s.png", (9, 9, 9))
    with pytest.raises(ConfigError, match="class\\(es\\) screw appear in val but not in train"):
        open_data(tmp_path)


def test_unreadable_files_are_skipped_with_names_or_refused_with_strict(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "nut" / "broken.png").write_bytes(b"not a png at all")
    good = (tmp_path / "bolt" / "bolt0.png").read_bytes()
    (tmp_path / "bolt" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    (tmp_path / "bolt" / "notes.txt").write_text("ignored")
    data = open_data(tmp_path)
    skipped = next(n for n in data.notes if n.startswith("skipped 2 unreadable"))
    assert "broken.png" in skipped and "cut.png" in skipped
    assert any("notes.txt" in n and "without an image suffix" in n for n in data.notes)
    (tmp_path / ".ipynb_checkpoints").mkdir()  # hidden folders are never classes
    (tmp_path / "stray.png").write_bytes(good)  # beside the class folders: in no class
    data = open_data(tmp_path)
    assert data.classes == CLASSES and any("stray.png" in n and "outside class folders" in n for n in data.notes)
    assert all("broken" not in p for s in data.splits.values() for p in s.paths)
    with pytest.raises(InputError, match="2 of 20 image\\(s\\) in .* cannot be read"):
        open_data(tmp_path, strict=True)


def test_truncated_jpeg_is_caught_up_front_and_a_jpeg_with_a_trailer_is_kept(tmp_path):
    make_folder(tmp_path)
    photo = tmp_path / "nut" / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo, quality=90)
    whole = photo.read_bytes()
    (tmp_path / "nut" / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # Pillow's verify() passes this
    (tmp_path / "washer" / "trailer.jpg").write_bytes(whole + bytes(range(256)) * 40)  # data after the end marker
    data = open_data(tmp_path)
    (skipped,) = [n for n in data.notes if n.startswith("skipped")]
    assert skipped.startswith("skipped 1 unreadable") and "cut.jpg" in skipped
    kept = [p for s in data.splits.values() for p in s.paths]
    assert any(p.endswith("trailer.jpg") for p in kept) and any(p.endswith("photo.jpg") for p in kept)


def test_symlink_loop_is_refused(tmp_path):
    make_folder(tmp_path)
    os.symlink(tmp_path / "nut", tmp_path / "nut" / "again")
    with pytest.raises(ConfigError, match="reached twice \\(a symbolic link loop"):
        open_data(tmp_path)


def test_same_file_in_two_classes(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "nut" / "copy.png").write_bytes((tmp_path / "bolt" / "bolt1.png").read_bytes())
    data = open_data(tmp_path)
    note = next(n for n in data.notes if "in two classes" in n)
    assert "bolt1.png (bolt)" in note and "copy.png (nut)" in note
    assert sum(len(s) for s in data.splits.values()) == 17  # 19 files, both copies left out
    with pytest.raises(InputError, match="1 image\\(s\\) are in two classes"):
        open_data(tmp_path, strict=True)


def test_mixed_modes_are_read_and_said(tmp_path):
    make_folder(tmp_path)
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        path = tmp_path / "bolt" / f"m{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        if mode == "I;16":
            Image.fromarray(np.full((12, 12), 40000, np.uint16)).save(path)
        else:
            _image(path, (200, 40, 40), mode=mode)
    data = open_data(tmp_path)
    note = next(n for n in data.notes if n.startswith("image modes"))
    assert all(m in note for m in ("CMYK 1", "L 1", "P 1", "RGBA 1", "RGB 18")) and data.channels == 3
    pre = Preprocessing(color="rgb", mean=(0.0,) * 3, std=(1.0,) * 3)
    batches = Batches(data.split("train"), channels=3, size=16, pre=pre, batch_size=64, strict=True)
    assert sum(len(x) for x, _ in batches) == len(data.split("train"))


def test_huge_image_is_refused_by_the_runtimes_limit(tmp_path, monkeypatch):
    import nin_edge.runtime.preprocess as preprocess

    make_folder(tmp_path)
    _image(tmp_path / "nut" / "huge.png", (40, 200, 40), side=300)
    monkeypatch.setattr(preprocess, "MAX_IMAGE_PIXELS", 200 * 200)  # from the header, before decoding
    data = open_data(tmp_path)
    assert any("huge.png" in n and "exceeds the limit of 40,000" in n for n in data.notes)
    with pytest.raises(InputError, match="huge.png .*exceeds the limit"):
        open_data(tmp_path, strict=True)


def test_manifest_with_missing_files_or_unknown_labels(tmp_path):
    path = make_manifest(tmp_path)
    path.write_text(path.read_text() + "images/gone.png,nut\n")
    with pytest.raises(ConfigError, match="names 1 file\\(s\\) that do not exist .*gone.png"):
        open_data(path)
    path.write_text("path,label\nimages/bolt0.png,bolt\nimages/nut0.png,nut\nimages/washer0.png,washer\n")
    data = open_data(path)
    with pytest.raises(ConfigError, match="absent from the class list"):
        open_data(path, classes=("bolt", "nut"))
    assert data.classes == CLASSES
    path.write_text("file,class\na.png,x\n")
    with pytest.raises(ConfigError, match="needs a header line with the columns path,label"):
        open_data(path)


def test_data_option_errors_are_one_line(tmp_path):
    (tmp_path / "x.txt").write_text("")
    assert_one_line_error(
        run_cli(train_main, ["--data", tmp_path / "x.txt", "--output", tmp_path / "c.pt"]), "is a file but not"
    )
    assert_one_line_error(run_cli(train_main, ["--output", tmp_path / "c.pt"]), "--data is required")


def test_old_data_dir_spelling_warns(tiny_fashion, tmp_path):
    result = run_cli(eval_main, ["--data-dir", tiny_fashion, "--weights", tmp_path / "none.pt"])
    warning, error = result.stderr.strip().splitlines()
    assert warning == "warning: --data-dir is now --data; the old spelling goes in the next release"
    assert result.exit_code == 1 and error.startswith("error: weights file") and "does not exist" in error


# -- fine-tuning -------------------------------------------------------------------------------------


def test_init_from_adapts_channels_and_classes():
    grey = create_model("nin", input_size=SIZE)
    source = {k: v.clone() for k, v in grey.state_dict().items()}
    model = create_model("nin", in_channels=3, num_classes=4, input_size=SIZE)
    fresh = model.state_dict()["7.0.weight"].clone()
    kept, new = init_from(model, source, "g.pt")
    assert new == ["7.0.weight", "7.0.bias", "7.2.weight", "7.2.bias", "7.4.weight", "7.4.bias"]
    assert any(k.startswith("0.0.weight (grey kernel repeated over 3 channels") for k in kept)
    first = model.state_dict()["0.0.weight"]
    assert torch.allclose(first.sum(1, keepdim=True), source["0.0.weight"], atol=1e-6)  # a grey image: same response
    assert torch.equal(model.state_dict()["7.0.weight"], fresh) and torch.equal(
        model.state_dict()["2.2.weight"], source["2.2.weight"]
    )


def test_a_new_last_block_is_new_as_a_whole_even_where_a_tensor_keeps_its_shape():
    """The wide head for 10 classes ends in a 16 -> 10 layer whose bias has the book head's shape: it must
    start fresh too, not carry the Fashion-MNIST classes' biases into the new classes."""
    book = create_model("nin", input_size=SIZE)
    source = {k: torch.full_like(v, 0.5) for k, v in book.state_dict().items()}
    wide = create_model("nin", in_channels=3, num_classes=10, input_size=SIZE, head="wide")
    fresh = wide.state_dict()["7.4.bias"].clone()
    kept, new = init_from(wide, source, "g.pt")
    assert sorted(new) == ["7.0.bias", "7.0.weight", "7.2.bias", "7.2.weight", "7.4.bias", "7.4.weight"]
    assert not any(k.startswith("7.") for k in kept)
    assert torch.equal(wide.state_dict()["7.4.bias"], fresh)
    assert torch.equal(wide.state_dict()["4.4.bias"], source["4.4.bias"])


# -- end to end --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_folder_to_bundle_to_infer_with_the_folders_class_names(tmp_path):
    data = make_folder(tmp_path / "parts", per_class=6)
    ckpt = tmp_path / "parts.pt"
    # Not the default split (0.1, seed 0: one image per class): export must hold out these two per class.
    split = ["--val-fraction", 0.34, "--seed", 3]
    trained = run_cli(
        train_main,
        [
            "--data",
            data,
            "--epochs",
            2,
            "--init-from",
            "pretrained",
            "--output",
            ckpt,
            "--format",
            "json",
            *split,
            *FAST,
        ],
    )
    assert trained.exit_code == 0, trained.stderr
    assert "each epoch is scored on the val split (6 images)" in trained.stderr and "held-out acc" in trained.stderr
    assert "checking images" in trained.stderr or "checked 18 image files" in trained.stderr
    assert "kept" in trained.stderr and "new (re-initialised for the new classes): 7.0, 7.2, 7.4" in trained.stderr
    assert "grey kernel repeated over 3 channels" in trained.stderr
    report = json.loads(trained.stdout)
    assert report["classes"] == list(CLASSES) and len(report["history"]) == 2
    saved = torch.load(ckpt, weights_only=True)
    assert saved["card"]["labels"] == list(CLASSES) and saved["card"]["in_channels"] == 3
    assert saved["card"]["preprocessing"]["color"] == "rgb" and saved["data"]["val_fraction"] == 0.34
    assert Path(report["best"]).is_file() and report["held_out"] == "val"

    evaluated = run_cli(eval_main, ["--data", data, "--weights", ckpt, "--format", "json"])
    assert evaluated.exit_code == 0, evaluated.stderr
    (scores,) = json.loads(evaluated.stdout)["results"]
    assert list(scores["recall"]) == list(CLASSES) and list(scores["precision"]) == list(CLASSES)
    assert sum(scores["support"].values()) == 6  # the recorded validation split: two images per class
    table = run_cli(eval_main, ["--data", data, "--weights", ckpt]).stdout
    assert "0 bolt, 1 nut, 2 washer" in table and "(val split)" in table

    bundle = tmp_path / "bundle"
    exported = run_cli(
        export_cli,
        [
            *("--weights", ckpt, "--bundle", bundle, "--check-batch-sizes", "1,2", "--bundle-precisions", "fp32,int8"),
            *("--calibration-data", data, "--eval-data", data, "--min-agreement", 0),
            "--allow-chance",  # two epochs on 12 images need not beat chance; this test is about the plumbing
        ],
    )
    assert exported.exit_code == 0, exported.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    # Calibrated on the folder's training split, judged on its validation split, with its labels.
    assert all(isinstance(manifest["models"][p]["accuracy"], float) for p in ("fp32", "int8"))
    assert manifest["labels"] == list(CLASSES) and manifest["preprocessing"]["color"] == "rgb"
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Labels: 0 bolt, 1 nut, 2 washer." in card and "convert to rgb" in card
    assert "top-1 on 6 images sampled across classes from the val split of the evaluation data (class folders)" in card
    assert (
        "Data: parts (folder, 3 classes). Trained with `nin-train`" in card
        and str(tmp_path) not in card
        and "nin-train, 2 epoch(s), from pretrained" in card
    )
    clf = Classifier(bundle / "model.onnx") if (bundle / "model.onnx").exists() else Classifier(bundle)
    assert clf.labels == CLASSES and clf.input_shape == (3, SIZE, SIZE)
    assert clf.metadata.preprocessing.color == "rgb"

    onnx_path, triton = tmp_path / "parts.onnx", tmp_path / "triton"
    args = ["--weights", ckpt, "--output", onnx_path, "--check-batch-sizes", 1, "--triton-repo", triton]
    assert run_cli(export_cli, args).exit_code == 0
    assert (triton / "nin" / "labels.txt").read_text().split() == list(CLASSES)
    inferred = run_cli(infer_main, [onnx_path, data / "nut" / "nut3.png", "--top-k", 3])
    assert inferred.exit_code == 0, inferred.stderr
    assert all(name in inferred.stdout for name in CLASSES) and "class_0" not in inferred.stdout
    both = run_cli(eval_main, ["--data", data, "--weights", ckpt, "--onnx", onnx_path, "--format", "json"])
    assert json.loads(both.stdout)["agreement"] == 1.0


@pytest.mark.slow
def test_manifest_trains_evaluates_and_resume_checks_classes(tmp_path):
    manifest = make_manifest(tmp_path / "m")
    ckpt = tmp_path / "m.pt"
    args = ["--data", manifest, "--output", ckpt, *FAST]
    assert run_cli(train_main, [*args, "--epochs", 1, "--balance", "sampler"]).exit_code == 0
    evaluated = run_cli(eval_main, ["--data", manifest, "--weights", ckpt, "--format", "csv"])
    assert evaluated.exit_code == 0 and "washer" in evaluated.stdout
    resumed = run_cli(train_main, [*args, "--epochs", 2, "--resume", ckpt, "--balance", "sampler"])
    assert resumed.exit_code == 0, resumed.stderr
    assert_one_line_error(
        run_cli(train_main, [*args, "--epochs", 3, "--resume", ckpt, "--val-fraction", 0.5]),
        "was trained with --val-fraction 0.1, not 0.5",
    )
    held_out = Path(open_data(manifest).split("val").paths[0]).name  # removing it changes the split
    manifest.write_text("".join(line for line in manifest.read_text().splitlines(True) if held_out not in line))
    assert_one_line_error(
        run_cli(train_main, [*args, "--epochs", 3, "--resume", ckpt]),
        "the validation images of",
        "differ from those checkpoint",
        "resume on the same data",
        progress=True,  # after the "checked N image files" line
    )
    other = make_folder(tmp_path / "other")
    (other / "washer").rename(other / "spring")
    assert_one_line_error(
        run_cli(eval_main, ["--data", other, "--weights", ckpt]),
        "was trained on 3 classes",
        "the data has spring that it lacks",
        progress=True,
    )
    assert_one_line_error(
        run_cli(train_main, ["--data", other, "--output", tmp_path / "n.pt", "--epochs", 3, "--resume", ckpt, *FAST]),
        "was trained on 3 classes",
        progress=True,
    )


def test_training_config_refuses_bad_new_options(tmp_path):
    for field, value, message in [
        ("augment", "rotate", "augment must be one of auto, none, translate, crop"),
        ("balance", "x", "balance must be one of none, weights, sampler"),
        ("val_fraction", 1.5, "val fraction must be between 0 and 1"),
        ("channels", 2, "channels must be 1 (grayscale) or 3 (RGB)"),
        ("patience", -1, "patience must be a whole number from 0"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
            train(TrainConfig(data=str(tmp_path), output=str(tmp_path / "c.pt"), **{field: value}))


def test_scan_progress_bar_redraws_only_on_a_terminal(monkeypatch):
    import io

    from nin_edge.models.cli import _ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, frames in ((Terminal(), 2), (io.StringIO(), 0)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = _ProgressBar()
        bar.scan(256, 300)
        bar.scan(300, 300)
        assert stream.getvalue().count("\r") == frames
        assert stream.getvalue().endswith("300/300\n" if frames else "checked 300 image files\n")


def test_split_survives_moving_the_folder_and_manifest_split_column(tmp_path):
    import shutil

    data = open_data(make_folder(tmp_path / "a", per_class=10))
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = open_data(tmp_path / "b")
    assert moved.split_record["val_sha256"] == data.split_record["val_sha256"]
    path = make_manifest(tmp_path / "m")
    lines = path.read_text().splitlines()
    path.write_text(
        "path,label,split\n" + "".join(f"{line},{'test' if i % 5 == 0 else ''}\n" for i, line in enumerate(lines[1:]))
    )
    data = open_data(path)
    assert len(data.split("test")) == 3 and data.eval_split == "test" and len(data.split("val")) == 3


def test_augment_keeps_shapes_is_seeded_and_flips_exactly():
    from nin_edge.models.augment import augment

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    for kind in ("crop", "translate"):
        a = augment(x.clone(), kind, True, torch.Generator().manual_seed(1))
        b = augment(x.clone(), kind, True, torch.Generator().manual_seed(1))
        assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    flipped = augment(x.clone(), "none", True, torch.Generator().manual_seed(0))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x, strict=True))
    assert torch.equal(augment(x.clone(), "none", False, torch.Generator()), x)


@pytest.mark.slow
def test_early_stopping_best_checkpoint_class_weights_and_data_statistics(tmp_path):
    data = make_folder(tmp_path / "parts", per_class=4)
    ckpt = tmp_path / "c.pt"
    args = ["--data", data, "--output", ckpt, *FAST, "--lr", "1e-12", "--epochs", 5, "--patience", 1]
    result = run_cli(train_main, [*args, "--balance", "weights", "--normalize", "data", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["history"]) == 2  # no better after epoch 2 with a vanishing learning rate: stopped
    assert any("stopped early after epoch 2" in n for n in report["notes"])
    best = torch.load(report["best"], weights_only=True)
    assert best["epoch"] == 1
    pre = torch.load(ckpt, weights_only=True)["card"]["preprocessing"]
    # One red, one green and one blue class: each channel is 200 on a third of the images, else 40.
    assert pre["mean"] == pytest.approx([(200 + 40 + 40) / 3 / 255] * 3, abs=0.03)
    assert pre["std"] == pytest.approx([0.29] * 3, abs=0.03)


def test_cache_keeps_decoded_tensors_and_is_read_instead_of_the_files(tmp_path, monkeypatch):
    import nin_edge.models.datasets as datasets

    data = open_data(make_folder(tmp_path / "d"))
    pre = Preprocessing(color="rgb", mean=(0.0,) * 3, std=(1.0,) * 3)
    options = {"channels": 3, "size": 16, "pre": pre, "batch_size": 64, "cache": tmp_path / "cache"}
    (first, _), *_ = list(Batches(data.split("train"), **options))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(data.split("train"))

    def no_decoding(path, max_pixels=None):
        raise InputError(f"decoded {path}")

    monkeypatch.setattr(datasets, "read_image", no_decoding)
    (again, _), *_ = list(Batches(data.split("train"), **options))
    assert torch.equal(first, again)  # read from the cache, nothing decoded
    resized = Batches(data.split("train"), **{**options, "size": 20})
    assert list(resized) == [] and len(resized.failed) == len(data.split("train"))  # another size: not cached


def test_hundreds_of_classes_keep_their_order_and_one_held_out_image_each(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"part-{i:03d}" for i in range(500)]
    for name in names:
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = open_data(tmp_path)
    assert data.classes == tuple(names)
    assert (
        np.bincount(data.split("val").labels).tolist() == [1] * 500 == np.bincount(data.split("train").labels).tolist()
    )
