"""Regression tests for the hostile cases of issue 11: each one failed before its fix."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from nin_edge.benchmarks.cli import main as bench_cli
from nin_edge.export.cli import main as export_cli
from nin_edge.models.cli import eval_main, train_main
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.core.digest import graph_digest
from nin_edge.runtime.core.errors import ConfigError, InputError, ModelFileError
from nin_edge.runtime.core.files import atomic_output, check_writable, remove_stale_temporaries
from nin_edge.runtime.preprocess import read_image

from tests.conftest import assert_one_line_error, flip_weights, run_cli

EXPORT = ["--random-init", "--input-size", 70, "--check-batch-sizes", 1]


# -- 1. outputs that are not regular files are never replaced ------------------------------------


def test_a_fifo_output_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = run_cli(export_cli, [*EXPORT, "--output", fifo])
    assert_one_line_error(result, f"output '{fifo}' exists and is a FIFO, not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_output_is_refused_and_left_alone(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = run_cli(export_cli, [*EXPORT, "--output", node])
    assert_one_line_error(result, "exists and is a character device, not a regular file")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_a_directory_or_a_dangling_link_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="exists and is a directory"):
        check_writable(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.onnx")
    with pytest.raises(ConfigError, match="is a link to .*nowhere.onnx', which does not exist"):
        check_writable(tmp_path / "dangling")


def test_a_link_keeps_pointing_at_its_replaced_target(tmp_path):
    target = tmp_path / "v2.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "current.onnx"
    link.symlink_to(target)
    with atomic_output(link) as tmp:
        tmp.write_bytes(b"new")
    assert link.is_symlink() and link.resolve() == target and target.read_bytes() == b"new"


# -- 2. temporaries: removed on SIGTERM, stale ones cleaned by the next successful run ------------


def test_stale_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "n.onnx"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".n.onnx.nin-edge-{int(dead.stdout)}-abc123.tmp"
    alive = tmp_path / f".n.onnx.nin-edge-{os.getppid()}-def456.tmp"  # a process that still runs
    other = tmp_path / ".other.onnx.nin-edge-1-x.tmp"
    for f in (stale, alive, other):
        f.write_bytes(b"partial")
    assert remove_stale_temporaries(out) == [stale]
    stale.write_bytes(b"partial")
    with atomic_output(out) as tmp:
        tmp.write_bytes(b"model")
    assert not stale.exists() and alive.exists() and other.exists() and out.read_bytes() == b"model"


def test_sigterm_mid_write_removes_the_temporary_and_exits_143(tmp_path):
    out = tmp_path / "n.onnx"
    out.write_bytes(b"previous model")
    script = (
        "import sys, time, click\n"
        "from nin_edge.runtime.cli.common import one_line_errors\n"
        "from nin_edge.runtime.core.files import atomic_output\n"
        "@click.command()\n@one_line_errors\n"
        "def main():\n"
        f"    with atomic_output({str(out)!r}) as tmp:\n"
        "        tmp.write_bytes(b'x' * 1000)\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "main()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.glob(".n.onnx.nin-edge-*.tmp"))) == 1
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err.strip() == "terminated"
    assert list(tmp_path.glob(".n.onnx.nin-edge-*.tmp")) == [] and out.read_bytes() == b"previous model"


# -- 3. the optimised-graph cache is written atomically, verified and rebuilt when damaged --------


def _cache_entry(folder):
    (entry,) = folder.glob("*.onnx")
    return entry


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-digest"])
def test_a_damaged_optimized_cache_entry_is_rebuilt_with_a_warning(tiny_nin_path, tmp_path, damage):
    x = np.random.default_rng(1).random((2, 1, 224, 224), dtype=np.float32)
    reference = Classifier(tiny_nin_path, "cpu", optimized_model_dir=str(tmp_path)).logits(x)
    entry = _cache_entry(tmp_path)
    assert entry.with_suffix(".onnx.sha256").read_text().strip() == hashlib.sha256(entry.read_bytes()).hexdigest()
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data[-4096:] = bytes(b ^ 0xFF for b in data[-4096:])  # weight bytes: it would still load
        entry.write_bytes(bytes(data))
    else:
        entry.with_suffix(".onnx.sha256").unlink()
    with pytest.warns(RuntimeWarning, match=f"optimized-model cache entry '{entry}' is damaged .*; rebuilding it"):
        again = Classifier(tiny_nin_path, "cpu", optimized_model_dir=str(tmp_path))
    np.testing.assert_allclose(again.logits(x), reference, atol=1e-6)
    rebuilt = _cache_entry(tmp_path)
    assert rebuilt.with_suffix(".onnx.sha256").read_text().strip() == hashlib.sha256(rebuilt.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound entry is used without a word
        Classifier(tiny_nin_path, "cpu", optimized_model_dir=str(tmp_path))
    assert list(tmp_path.glob(".*.tmp")) == []


# -- 4. a digest of the graph is recorded at export and checked on load ---------------------------


def test_export_records_the_digest_of_the_graph_it_wrote(tmp_path):
    out = tmp_path / "n.onnx"
    assert run_cli(export_cli, [*EXPORT, "--output", out]).exit_code == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["graph_sha256"] == graph_digest(out.read_bytes())
    assert len(props["graph_sha256"]) == 64


def test_damaged_weights_are_refused_unless_verification_is_off(tiny_nin_path, tmp_path):
    damaged = flip_weights(tiny_nin_path, tmp_path / "damaged.onnx")
    with pytest.raises(ModelFileError, match="its graph and weights do not match the digest recorded at export"):
        Classifier(damaged, "cpu")
    loose = Classifier(damaged, "cpu", verify_weights=False)  # the user's explicit choice
    assert loose.logits(np.zeros((28, 28), np.uint8)).shape == (1, 10)
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    result = run_cli(infer_cli, [damaged, image])
    assert_one_line_error(result, "do not match the digest recorded at export", "verify_weights=False")


def test_a_file_that_is_not_protobuf_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError, match="is not a readable ONNX file"):
        graph_digest(bad.read_bytes(), str(bad))


def test_weights_check_modes_are_said_in_describe(tiny_nin_path, tmp_path, monkeypatch):
    assert Classifier(tiny_nin_path, "cpu").describe().weights_check.startswith("verified (graph sha256 ")
    assert Classifier(tiny_nin_path, "cpu", verify_weights=False).weights_check == "off (verify_weights=False)"
    # "auto" leaves large files alone (measured: VGG-11's 515 MB would add 0.9 s to a 2.8 s load) and says so
    monkeypatch.setattr("nin_edge.runtime.classifier.AUTO_VERIFY_BYTES", 1000)
    damaged = flip_weights(tiny_nin_path, tmp_path / "damaged.onnx")
    skipped = Classifier(damaged, "cpu")
    assert skipped.weights_check.startswith("skipped: 0 MB is over the 0 MB that verify_weights='auto' checks")
    assert "weights check  skipped" in skipped.describe().to_table()
    with pytest.raises(ModelFileError, match="do not match the digest"):
        Classifier(damaged, "cpu", verify_weights=True)
    with pytest.raises(ConfigError, match="verify_weights must be True, False or 'auto', got 'yes'"):
        Classifier(tiny_nin_path, "cpu", verify_weights="yes")


# -- 9-11 and the tracebacks: wrong answers with exit 0, absurd sizes and options -----------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], ["seed must be a whole number from 0 to 4294967295, got -1"]),
        (["--input-size", "100000"], ["input size 100000 is too large", "the largest is 5792"]),
        (["--check-batch-sizes", "100000"], ["a batch of 100000 at 1x70x70 needs 1,869 MiB", "use at most 13695"]),
    ],
)
def test_export_refuses_absurd_sizes_before_allocating(tmp_path, args, message):
    result = run_cli(export_cli, ["--random-init", "--input-size", 70, "--output", tmp_path / "n.onnx", *args])
    assert_one_line_error(result, *message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "nan"], "--duration must be a finite number of seconds >= 0, got nan"),
        (["--duration", "inf"], "--duration must be a finite number of seconds >= 0, got inf"),
        (["--pause", "-1"], "--pause must be a finite number of seconds >= 0, got -1.0"),
        (["--batch-sizes", "100000"], "--batch-sizes: a batch of 100000 at 1x224x224 needs"),
    ],
)
def test_bench_refuses_nonsense_timing_options(args, message):
    assert_one_line_error(run_cli(bench_cli, ["--models", "nin", *args]), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-limit", "-2990"], "--train-limit must be a positive number of images, got -2990"),
        (["--train-limit", "0"], "--train-limit must be a positive number of images, got 0"),
        (["--test-limit", "0"], "--test-limit must be a positive number of images, got 0"),
        (["--warmup-epochs", "nan"], "warmup epochs must be a finite number from 0 to --epochs (10), got nan"),
        (["--warmup-epochs", "inf"], "warmup epochs must be a finite number from 0 to --epochs (10), got inf"),
    ],
)
def test_train_refuses_nonsense_limits(tiny_fashion, tmp_path, args, message):
    result = run_cli(train_main, ["--data", tiny_fashion, "--output", tmp_path / "c.pt", *args])
    assert_one_line_error(result, message)


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_eval_refuses_nonsense_limits(tiny_fashion, tiny_nin_path, limit):
    result = run_cli(eval_main, ["--data", tiny_fashion, "--onnx", tiny_nin_path, "--limit", limit])
    assert_one_line_error(result, f"--limit must be a positive number of images, got {limit}")


def test_huge_finite_inputs_are_an_error_not_nan_probabilities(tiny_nin_path, tmp_path):
    clf = Classifier(tiny_nin_path, "cpu")
    x = np.full((2, 1, 224, 224), 3e38, np.float32)
    x[0] = 0.5
    with pytest.raises(
        InputError, match=r"logits for image 1 are NaN or infinite; its values \(largest magnitude 3e\+38\)"
    ):
        clf.classify(x)
    arr = tmp_path / "huge.npy"
    np.save(arr, x)
    assert_one_line_error(run_cli(infer_cli, [tiny_nin_path, arr]), "are NaN or infinite")


def test_metadata_with_a_zero_std_is_refused(tiny_nin_path, tmp_path):
    model = onnx.load(str(tiny_nin_path))
    for prop in model.metadata_props:
        if prop.key == "preprocessing":
            prop.value = prop.value.replace('"std": [1.0]', '"std": [0.0]')
    bad = tmp_path / "std0.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelFileError, match=r"unreadable nin-edge metadata: preprocessing std must be positive"):
        Classifier(bad, "cpu")


def test_an_integer_state_dict_is_refused(tmp_path):
    from nin_edge.models import create_model

    state = {k: v.to(torch.int64) for k, v in create_model("nin").state_dict().items()}
    ckpt = tmp_path / "int64.pt"
    torch.save(state, ckpt)
    result = run_cli(export_cli, ["--weights", ckpt, "--output", tmp_path / "n.onnx", "--input-size", 70])
    assert_one_line_error(result, "key '0.0.weight' holds torch.int64 values, expected floating point (torch.float32)")


# -- 8 and 13: 16-bit images, extreme sizes, phone photos -----------------------------------------


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    wide = (np.arange(28 * 28).reshape(28, 28) * 83).astype(np.uint16)  # up to 65,000
    Image.fromarray(wide).save(tmp_path / "x16.png")
    Image.fromarray(np.round(wide / 257).astype(np.uint8)).save(tmp_path / "x8.png")
    pixels = read_image(tmp_path / "x16.png")
    assert pixels.dtype == np.uint8 and pixels.max() == 253  # PIL's convert("L") would make most of it 255
    np.testing.assert_array_equal(pixels, read_image(tmp_path / "x8.png"))


def test_extreme_aspect_ratios_are_refused_before_decoding(tmp_path, tiny_nin_path):
    from PIL import Image

    Image.new("L", (100_000, 1)).save(tmp_path / "line.png")
    with pytest.raises(InputError, match=r"image of 100000x1 pixels has sides more than 64:1 apart; refused"):
        read_image(tmp_path / "line.png")
    with pytest.raises(InputError, match="sides more than 64:1 apart"):
        Classifier(tiny_nin_path, "cpu").logits(np.zeros((1, 2_000_000), np.uint8))


def test_phone_photos_are_turned_upright(tmp_path):
    from PIL import Image

    photo = np.zeros((40, 20), np.uint8)
    photo[:5, :] = 255  # a bright top edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(photo).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (20, 40) and upright[:, -5:].mean() > 200  # the top edge is now on the right


def test_empty_and_lying_npy_files_are_one_line_errors(tiny_nin_path, tmp_path):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 28, 28, 1), np.uint8))
    assert_one_line_error(run_cli(infer_cli, [tiny_nin_path, empty]), "holds no data: shape (0, 28, 28, 1)")
    liar = tmp_path / "liar.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000000000,), }"
    header += " " * (118 - len(header)) + "\n"
    liar.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(16))
    result = run_cli(infer_cli, [tiny_nin_path, liar])
    assert_one_line_error(result, "its header claims more data than the file's 145 bytes (truncated or corrupt)")
    with pytest.raises(InputError, match=r"got an empty batch, shape \(0, 28, 28, 1\)"):
        Classifier(tiny_nin_path, "cpu").prepare(np.zeros((0, 28, 28, 1), np.uint8))


def test_int8_calibration_on_an_empty_stack_is_refused(tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((0, 28, 28), np.uint8))
    args = ["--random-init", "--input-size", 70, "--precision", "int8", "--calibration-data", calib]
    result = run_cli(export_cli, [*args, "--output", tmp_path / "q.onnx"])
    assert_one_line_error(result, "calibration array", "holds no data: shape (0, 28, 28)")


# -- 12. a truncated nin-bench cache entry is rebuilt, not an error row forever ------------------


def test_a_truncated_bench_cache_entry_is_exported_again(tmp_path):
    from nin_edge.benchmarks.bench import cached_export

    path = cached_export("nin", 70, "fp32", tmp_path)
    good = path.read_bytes()
    assert path.with_suffix(".onnx.sha256").read_text().strip() == hashlib.sha256(good).hexdigest()
    path.write_bytes(good[: len(good) // 3])  # what a kill mid-export used to leave
    with pytest.warns(RuntimeWarning, match="is damaged or incomplete; exporting it again"):
        again = cached_export("nin", 70, "fp32", tmp_path)
    assert again == path and Classifier(path, "cpu").logits(np.zeros((28, 28), np.uint8)).shape == (1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_export("nin", 70, "fp32", tmp_path)  # sound now: reused silently


def test_new_shipped_weights_under_an_old_name_are_not_served_from_the_bench_cache(tmp_path, monkeypatch):
    """nin_pruned's weights and widths changed under the same name: the cache key names the weights."""
    from nin_edge.benchmarks import bench as bench_module
    from nin_edge.models.registry import pretrained_path

    first = bench_module.cached_export("nin_pruned", 70, "fp32", tmp_path)
    copy = tmp_path / "other.pt"
    state = torch.load(pretrained_path("nin_pruned"), weights_only=True)
    state["7.4.bias"] = state["7.4.bias"] + 1  # other weights, same shapes
    torch.save(state, copy)
    monkeypatch.setattr(bench_module, "pretrained_path", lambda name: copy)
    second = bench_module.cached_export("nin_pruned", 70, "fp32", tmp_path)
    assert second != first and second.exists()  # another key, so a fresh export, not the old file


# -- 7. calibration arrays in the wrong range, agreement measured on held-out images ------------


def test_calibration_tensors_outside_the_preprocessing_range_are_refused(tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(0, 255, (8, 1, 70, 70)).astype(np.float32))  # not scaled
    args = ["--random-init", "--input-size", 70, "--precision", "int8", "--calibration-data", calib]
    result = run_cli(export_cli, [*args, "--output", tmp_path / "q.onnx"])
    assert_one_line_error(result, "holds values from", "but the model's preprocessing produces 0 to 1")


def test_without_eval_data_agreement_is_measured_on_held_out_images(tiny_fashion, tmp_path):
    args = ["--random-init", "--input-size", 70, "--precision", "int8", "--calibration-data", tiny_fashion]
    args += ["--calibration-size", 32, "--eval-size", 40, "--min-agreement", 0, "--format", "json"]
    result = run_cli(export_cli, [*args, "--output", tmp_path / "q.onnx"])
    assert result.exit_code == 0, result.stderr
    reduced = json.loads(result.stdout)["reduced"]
    assert "images 33-72" in reduced["eval_images"] and "held out" in reduced["eval_images"]
    assert "first 32 images" in reduced["calibration"]
    too_few = run_cli(export_cli, [*args[:-6], "--calibration-size", 96, "--output", tmp_path / "r.onnx"])
    assert_one_line_error(too_few, "has no images after the first 96 used for calibration; give --eval-data")


def test_idx_headers_that_lie_and_empty_splits_are_one_line_errors(tiny_fashion, tmp_path):
    from tests.conftest import write_idx

    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes((tiny_fashion / name).read_bytes())
    liar = tmp_path / "train-images-idx3-ubyte"
    liar.write_bytes(bytes([0, 0, 8, 3]) + (2**31 - 1).to_bytes(4, "big") * 2 + (4).to_bytes(4, "big") + bytes(100))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    args = ["--data", tmp_path, "--output", tmp_path / "c.pt", "--input-size", 70]
    assert_one_line_error(run_cli(train_main, args), "header (2147483647, 2147483647, 4) needs 18,446,744,056")
    write_idx(liar, np.zeros((0, 28, 28), np.uint8))
    assert_one_line_error(run_cli(train_main, args), "the train split in", "holds no images")


@pytest.mark.slow
def test_resume_with_another_optimizer_or_model_is_refused(tiny_fashion, tmp_path):
    ckpt = tmp_path / "c.pt"
    base = ["--data", tiny_fashion, "--input-size", 70, "--train-limit", 16, "--test-limit", 8, "--no-plot"]
    assert run_cli(train_main, [*base, "--epochs", 1, "--output", ckpt]).exit_code == 0
    again = [*base, "--epochs", 2, "--output", tmp_path / "d.pt", "--resume", ckpt]
    assert_one_line_error(
        run_cli(train_main, [*again, "--optimizer", "adamw"]), "trained with --optimizer sgd, not adamw"
    )
    assert_one_line_error(run_cli(train_main, [*again, "--model", "alexnet"]), "trained with --model nin, not alexnet")


def test_eval_refuses_a_model_with_another_class_count(tiny_fashion, tmp_path):
    five = tmp_path / "five.onnx"
    assert run_cli(export_cli, [*EXPORT, "--num-classes", 5, "--output", five]).exit_code == 0
    result = run_cli(eval_main, ["--data", tiny_fashion, "--onnx", five])
    assert_one_line_error(result, "has 5 classes; Fashion-MNIST evaluation needs 10")


# -- 5/6. serving: each request of a dynamic batch is answered on its own ---------------------------


def test_each_request_of_a_batch_gets_its_own_answer_or_error(tiny_nin_path):
    from nin_edge.runtime.serving.triton import answer_each

    clf = Classifier(tiny_nin_path, "cpu")
    rng = np.random.default_rng(3)
    good = [rng.random((n, 1, 224, 224), dtype=np.float32) for n in (1, 2, 1)]
    nan = good[0].copy()
    nan[0, 0, 5, 5] = np.nan
    huge = np.full((1, 1, 224, 224), 3e38, np.float32)
    wrong = np.zeros((1, 1, 28, 28), np.float32)
    answers = answer_each(clf, [good[0], nan, good[1], huge, wrong, good[2]])
    for k, x in ((0, good[0]), (2, good[1]), (5, good[2])):
        np.testing.assert_allclose(answers[k], clf.logits(x), atol=1e-5)
    assert str(answers[1]) == "input 'input': 1 value is NaN or infinite; expected finite numbers"
    assert isinstance(answers[3], InputError) and "logits for image 0 are NaN or infinite" in str(answers[3])
    assert str(answers[4]) == "input 'input': expected float32 (N,1,224,224), got float32 (1, 1, 28, 28)"


def test_serve_refuses_a_name_triton_cannot_use_before_starting(tiny_nin_path):
    from nin_edge.runtime.cli.serve import main as serve_cli

    assert_one_line_error(
        run_cli(serve_cli, [tiny_nin_path, "--name", "../x"]), "--name '../x': expected a plain name of letters"
    )


# -- Ctrl-C while a command's heavy imports load -----------------------------------------------------


def _console_scripts() -> dict[str, str]:
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    return pyproject["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(_console_scripts()))
def test_console_scripts_enter_through_a_module_that_imports_nothing_heavy(script):
    module, _, function = _console_scripts()[script].partition(":")
    probe = (
        f"import sys, {module} as m; assert callable(m.{function}); "
        "print(sorted(k for k in ('torch', 'onnx', 'onnxruntime', 'numpy', 'click') if k in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_interrupt_during_the_imports_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    from nin_edge.runtime.core.launch import launch

    (tmp_path / "slow_command.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        launch("slow_command")
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.slow
def test_ctrl_c_while_nin_export_starts_is_not_a_traceback(tmp_path):
    from pathlib import Path

    exe = Path(sys.executable).with_name("nin-export")
    # A shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # give the child the default handler a terminal user has, whatever launched pytest.
    proc = subprocess.Popen(
        [str(exe), "--help"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    import time

    time.sleep(0.3)  # torch alone takes over a second to import
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "interrupted\n")


@pytest.mark.parametrize("package", ["nin_edge.runtime", "nin_edge.models", "nin_edge.export", "nin_edge.benchmarks"])
def test_lazy_packages_give_every_name_they_list(package):
    import importlib

    module = importlib.import_module(package)
    assert set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_the_serving_watchdog_ends_nin_serve_when_triton_is_gone(tmp_path, monkeypatch, capsys):
    """PyTriton can deadlock when Triton dies while it connects; the watchdog still exits 1."""
    import shutil
    import threading

    from nin_edge.runtime.serving import triton as serving

    fake = tmp_path / "tritonserver"
    shutil.copy("/bin/sleep", fake)
    child = subprocess.Popen([str(fake), "30"])
    try:
        assert serving._server_running()
    finally:
        child.kill()
        child.wait()
    assert not serving._server_running()

    states = iter([True, False, False, False])
    monkeypatch.setattr(serving, "_server_running", lambda: next(states, False))
    monkeypatch.setattr(serving, "WATCHDOG_GRACE_S", 0.5)

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(serving.os, "_exit", exit_)
    with pytest.raises(SystemExit) as ended:
        serving._watch(threading.Event(), lambda: "error: Triton Inference Server stopped while serving nin (why)")
    assert ended.value.code == 1
    assert capsys.readouterr().err == "error: Triton Inference Server stopped while serving nin (why)\n"
