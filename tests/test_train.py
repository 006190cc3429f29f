"""nin-train and nin-eval on tiny data: checkpoints, exact resume, divergence, torchrun, both eval paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nin_edge.export.cli import main as export_cli
from nin_edge.models.cli import eval_main, train_main
from nin_edge.models.registry import pretrained_path
from nin_edge.models.train import TrainConfig, TrainingDivergedError, train
from nin_edge.runtime.core.errors import ConfigError

from tests.conftest import assert_one_line_error, run_cli

SIZE = 67  # NiN's smallest input keeps these runs fast
FAST = {"input_size": SIZE, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "plot": False}


@pytest.mark.slow
def test_one_epoch_writes_a_checkpoint_that_nin_export_accepts(tiny_fashion, tmp_path):
    ckpt = tmp_path / "nin.pt"
    result = run_cli(
        train_main,
        [
            "--data",
            tiny_fashion,
            "--epochs",
            1,
            "--input-size",
            SIZE,
            "--batch-size",
            32,
            "--output",
            ckpt,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    (epoch,) = report["history"]
    assert (
        epoch["epoch"] == 1
        and 0 <= epoch["held_out_acc"] <= 1
        and "test_acc" not in epoch
        and epoch["examples_per_s"] > 0
    )
    assert report["recipe"]["lr"] == 0.1 and report["recipe"]["optimizer"] == "sgd"  # the book's defaults
    assert "epoch 1: train loss" in result.stderr and "3/3 steps" in result.stderr
    assert "\r" not in result.stderr  # no carriage-return frames when stderr is not a terminal
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 1 and saved["model"] == "nin" and saved["recipe"]["input_size"] == SIZE
    assert ckpt.with_suffix(".png").stat().st_size > 1000  # the curves
    exported = run_cli(export_cli, ["--weights", ckpt, "--input-size", SIZE, "--output", tmp_path / "nin.onnx"])
    assert exported.exit_code == 0, exported.stderr
    assert "sha256:" in exported.stdout


@pytest.mark.slow
def test_training_lowers_the_loss(tiny_fashion, tmp_path):
    config = TrainConfig(data=str(tiny_fashion), epochs=3, output=str(tmp_path / "c.pt"), **{**FAST, "lr": 2e-3})
    losses = [h.train_loss for h in train(config).history]
    assert losses[2] < losses[1] < losses[0]


@pytest.mark.slow
def test_resume_continues_exactly(tiny_fashion, tmp_path):
    straight = train(TrainConfig(data=str(tiny_fashion), epochs=2, flip=True, output=str(tmp_path / "a.pt"), **FAST))
    train(TrainConfig(data=str(tiny_fashion), epochs=1, flip=True, output=str(tmp_path / "b.pt"), **FAST))
    shutil.copy(tmp_path / "b.pt", tmp_path / "b1.pt")
    resumed = train(
        TrainConfig(
            data=str(tiny_fashion),
            epochs=2,
            flip=True,
            output=str(tmp_path / "b.pt"),
            resume=str(tmp_path / "b1.pt"),
            **FAST,
        )
    )
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert [h.train_loss for h in straight.history] == [h.train_loss for h in resumed.history]
    assert b["epoch"] == 2


@pytest.mark.slow
def test_resume_of_a_finished_run_asks_for_more_epochs(tiny_fashion, tmp_path):
    train(TrainConfig(data=str(tiny_fashion), epochs=1, output=str(tmp_path / "a.pt"), **FAST))
    with pytest.raises(ConfigError, match="already has 1 epochs; ask for more with --epochs"):
        train(
            TrainConfig(
                data=str(tiny_fashion),
                epochs=1,
                output=str(tmp_path / "x.pt"),
                resume=str(tmp_path / "a.pt"),
                **FAST,
            )
        )


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_fashion, tmp_path):
    out = tmp_path / "good.pt"
    out.write_bytes(b"last good checkpoint")
    # --overwrite: the marker is not a nin-train checkpoint, which nin-train otherwise refuses to replace.
    config = TrainConfig(
        data=str(tiny_fashion), epochs=1, output=str(out), overwrite=True, **{**FAST, "optimizer": "sgd", "lr": 1e12}
    )
    with pytest.raises(
        TrainingDivergedError, match=r"the loss became (nan|inf) at epoch 1, step \d+; nothing was saved"
    ):
        train(config)
    assert out.read_bytes() == b"last good checkpoint"
    result = run_cli(
        train_main,
        [
            "--data",
            tiny_fashion,
            "--epochs",
            1,
            "--input-size",
            SIZE,
            "--lr",
            "1e12",
            "--batch-size",
            16,
            "--output",
            out,
            "--no-plot",
            "--overwrite",
        ],
    )
    assert_one_line_error(result, "Lower --lr (now 1e+12)", progress=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", 0], "epochs must be a positive whole number, got 0"),
        (["--lr", "-1"], "lr must be a positive number, got -1.0"),
        (["--model", "lenet"], "unknown model 'lenet'"),
        (["--input-size", 50], "input size 50 is too small for nin"),
        (["--device", "tpu"], "device must be auto, cpu or cuda[:N], got 'tpu'"),
        (["--output", "/no/such/dir/c.pt"], "checkpoint folder '/no/such/dir' does not exist"),
    ],
)
def test_bad_training_options(tiny_fashion, tmp_path, args, message):
    result = run_cli(train_main, ["--data", tiny_fashion, "--output", tmp_path / "c.pt", *args])
    assert_one_line_error(result, message)


def test_missing_data_dir_is_one_line_error(tmp_path):
    assert_one_line_error(run_cli(train_main, ["--data", tmp_path / "none"]), "data folder")


@pytest.mark.slow
@pytest.mark.e2e
def test_torchrun_two_cpu_processes(tiny_fashion, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    ckpt = tmp_path / "ddp.pt"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        shutil.which("nin-train", path=os.path.dirname(sys.executable)),
        "--data",
        str(tiny_fashion),
        "--epochs",
        "1",
        "--input-size",
        str(SIZE),
        "--batch-size",
        "32",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--device",
        "cpu",
        "--output",
        str(ckpt),
        "--format",
        "json",
        "--no-plot",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # rank 0 alone prints
    assert report["world_size"] == 2
    assert report["history"][0]["epoch"] == 1
    # 96 images over 2 ranks of 16-image batches: 3 steps each, all 96 images counted once.
    assert done.stderr.count("epoch 1: train loss") == 1
    saved = torch.load(ckpt, weights_only=True)
    assert not any(k.startswith("module.") for k in saved["state_dict"])
    assert sorted(tmp_path.iterdir()) == [tmp_path / "ddp.best.pt", ckpt]  # rank 0 alone writes


@pytest.fixture(scope="module")
def trained(tiny_fashion, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    ckpt = folder / "nin.pt"
    train(TrainConfig(data=str(tiny_fashion), epochs=3, output=str(ckpt), **FAST))
    onnx_path = folder / "nin.onnx"
    assert run_cli(export_cli, ["--weights", ckpt, "--input-size", SIZE, "--output", onnx_path]).exit_code == 0
    return ckpt, onnx_path


@pytest.mark.slow
def test_eval_checkpoint_and_onnx_agree(tiny_fashion, trained, tmp_path):
    ckpt, onnx_path = trained
    png = tmp_path / "confusion.png"
    result = run_cli(
        eval_main,
        [
            "--data",
            tiny_fashion,
            "--weights",
            ckpt,
            "--onnx",
            onnx_path,
            "--provider",
            "cpu",
            "--format",
            "json",
            "--confusion-png",
            png,
        ],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    torch_scores, onnx_scores = report["results"]
    assert report["images"] == 40 and report["agreement"] == 1.0
    assert torch_scores["accuracy"] == onnx_scores["accuracy"]
    assert torch_scores["input_size"] == onnx_scores["input_size"] == SIZE
    assert sum(map(sum, torch_scores["confusion"])) == 40
    diagonal = sum(torch_scores["confusion"][i][i] for i in range(10))
    assert diagonal / 40 == pytest.approx(torch_scores["accuracy"])
    assert list(torch_scores["recall"])[0] == "T-shirt/top"
    assert png.stat().st_size > 1000
    table = run_cli(eval_main, ["--data", tiny_fashion, "--onnx", onnx_path])
    assert "confusion matrix" in table.stdout and "accuracy" in table.stdout


@pytest.mark.slow
def test_eval_refusals(tiny_fashion, trained, tmp_path):
    assert_one_line_error(run_cli(eval_main, ["--data", tiny_fashion]), "give --weights CKPT, --onnx MODEL, or both")
    assert_one_line_error(run_cli(eval_main, ["--data", tiny_fashion, "--onnx", tmp_path / "x.onnx"]), "does not exist")
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    assert_one_line_error(run_cli(eval_main, ["--data", tiny_fashion, "--weights", bad]), "cannot read weights file")


REAL_SAMPLE = Path(__file__).parent / "data"


@pytest.mark.slow
def test_shipped_weights_are_trained_on_real_images(tmp_path):
    """The first 200 real Fashion-MNIST test images, through both nin-eval paths."""
    onnx_path = tmp_path / "nin.onnx"
    assert run_cli(export_cli, ["--output", onnx_path, "--check-batch-sizes", 1]).exit_code == 0
    result = run_cli(
        eval_main,
        [
            "--data",
            REAL_SAMPLE,
            "--weights",
            pretrained_path("nin"),
            "--input-size",
            112,
            "--onnx",
            onnx_path,
            "--provider",
            "cpu",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    torch_scores, onnx_scores = report["results"]
    assert report["images"] == 200 and torch_scores["input_size"] == onnx_scores["input_size"] == 112
    assert torch_scores["accuracy"] >= 0.85 and onnx_scores["accuracy"] >= 0.85
    assert report["agreement"] >= 0.99


def test_progress_bar_redraws_only_on_a_terminal(monkeypatch):
    import io

    from nin_edge.models.cli import _ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, frames in ((Terminal(), 3), (io.StringIO(), 0)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = _ProgressBar()
        for step in (1, 2, 3):
            bar(step, 3, 0.5)
        assert stream.getvalue().count("\r") == frames
        assert stream.getvalue().endswith("3/3 loss 0.5000\n" if frames else "3/3 steps, loss 0.5000\n")


def test_eval_accepts_the_old_image_size_spelling(tiny_fashion, nin_checkpoint):
    from nin_edge.models.cli import eval_main

    args = ["--data", tiny_fashion, "--weights", nin_checkpoint, "--limit", 8, "--format", "json"]
    result = run_cli(eval_main, [*args, "--image-size", 72])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["input_size"] == 72
    assert "warning: --image-size is now --input-size" in result.stderr


def test_eval_takes_max_batch_and_the_old_batch_size_spelling_with_a_warning(tiny_fashion, nin_checkpoint):
    from nin_edge.models.cli import eval_main

    args = ["--data", tiny_fashion, "--weights", nin_checkpoint, "--limit", 8, "--format", "json"]
    new = run_cli(eval_main, [*args, "--max-batch", 4])
    old = run_cli(eval_main, [*args, "--batch-size", 4])
    assert new.exit_code == 0 and old.exit_code == 0, (new.stderr, old.stderr)
    assert json.loads(new.stdout)["results"] == json.loads(old.stdout)["results"]
    assert "warning: --batch-size is now --max-batch; the old spelling goes in the next release" in old.stderr
    assert_one_line_error(run_cli(eval_main, [*args, "--max-batch", 0]), "max batch must be positive, got 0")


def test_amp_on_a_cpu_without_bf16_is_refused_before_any_work(tiny_fashion, tmp_path, monkeypatch):
    import nin_edge.models.train_config as config_module

    monkeypatch.setattr(config_module, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    result = run_cli(train_main, ["--data", tiny_fashion, "--device", "cpu", "--amp", "--output", tmp_path / "c.pt"])
    assert_one_line_error(result, "this CPU has none of avx512_bf16, amx_bf16: bf16 would be emulated")
    assert not (tmp_path / "c.pt").exists()


def test_amp_on_a_bf16_cpu_trains_in_bfloat16_and_says_so(tiny_fashion, tmp_path, monkeypatch):
    import nin_edge.models.train as train_module
    import nin_edge.models.train_config as config_module

    monkeypatch.setattr(config_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    seen: list[torch.dtype] = []
    original = train_module.amp_dtype

    def spy(device):
        seen.append(original(device))
        return seen[-1]

    monkeypatch.setattr(train_module, "amp_dtype", spy)
    config = TrainConfig(
        data=str(tiny_fashion),
        epochs=1,
        device="cpu",
        amp=True,
        train_limit=32,
        test_limit=32,
        output=str(tmp_path / "c.pt"),
        **FAST,
    )
    notes: list[str] = []
    result = train(config, on_note=notes.append)
    assert "mixed precision: bfloat16 autocast on cpu" in notes
    assert seen and set(seen) == {torch.bfloat16}
    assert result.history[0].train_loss > 0
