"""What a new user meets on the way: Ctrl-C says how to go on, --web says where its ONNX file goes, and
the install command the docs give."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nin_edge.export.cli import main as export_cli
from nin_edge.models.cli import train_main
from nin_edge.runtime.cli.infer import main as infer_cli

from tests.conftest import assert_one_line_error, run_cli

ROOT = Path(__file__).parent.parent


def _interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_nin_infer_says_the_command_that_resumes(monkeypatch, tmp_path):
    monkeypatch.setattr("nin_edge.runtime.cli.infer.run_infer", _interrupt)
    out = tmp_path / "rows out.csv"
    args = ["m.onnx", "photos/", "-o", str(out), "--overwrite"]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/nin-infer", *args])
    result = run_cli(infer_cli, args)
    assert result.exit_code == 130
    assert result.stderr == (
        f"interrupted; the rows so far are in {out}; go on with: nin-infer m.onnx photos/ -o '{out}' --resume\n"
    )
    # Rows on standard output cannot be resumed: the line says only that it stopped.
    monkeypatch.setattr(sys, "argv", ["nin-infer", "m.onnx", "photos/"])
    assert run_cli(infer_cli, ["m.onnx", "photos/"]).stderr == "interrupted\n"


def test_ctrl_c_in_nin_train_says_the_command_that_resumes(monkeypatch, tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    args = ["--data", "fashion", "--epochs", "9", "--output", str(checkpoint)]
    monkeypatch.setattr("nin_edge.models.cli.train", _interrupt)
    result = run_cli(train_main, args)
    assert result.exit_code == 130
    assert result.stderr == (
        f"interrupted; no epoch finished, so there is no checkpoint to resume from ('{checkpoint}' was not written)\n"
    )
    args += ["--resume", "old.pt"]
    result = run_cli(train_main, args)
    assert result.exit_code == 130
    assert result.stderr == "interrupted; no epoch finished in this run; the same command goes on from 'old.pt' again\n"
    # The first run started from other weights: the command that resumes leaves them out (--resume refuses them).
    monkeypatch.setattr(sys, "argv", ["nin-train", *args[:-2], "--init-from", "pretrained", "--head=wide"])

    def one_epoch_then_interrupt(*_args, **_kwargs):
        checkpoint.write_bytes(b"an epoch")
        raise KeyboardInterrupt

    monkeypatch.setattr("nin_edge.models.cli.train", one_epoch_then_interrupt)
    result = run_cli(train_main, args)
    assert result.exit_code == 130
    assert result.stderr == (
        f"interrupted; '{checkpoint}' holds the last finished epoch; go on with: "
        f"nin-train --data fashion --epochs 9 --output {checkpoint} --resume {checkpoint}\n"
    )


@pytest.mark.slow
def test_web_says_where_it_writes_the_onnx_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--random-init", "--input-size", "70", "--check-batch-sizes", "1", "--web", "site"]
    first = run_cli(export_cli, args)
    assert first.exit_code == 0, first.stderr
    assert (
        first.stderr
        == "note: --web also wrote the ONNX model it was made from to nin.onnx; --output chooses the path\n"
    )
    again = run_cli(export_cli, args)
    assert again.exit_code == 0, again.stderr
    assert "to nin.onnx (replacing the file there); --output chooses the path" in again.stderr


def test_resume_refuses_options_that_only_start_a_run(tmp_path):
    for given in (["--init-from", "pretrained"], ["--head", "wide"]):
        result = run_cli(train_main, ["--data", "fashion", "--resume", "run.pt", *given])
        assert_one_line_error(
            result,
            f"--resume continues 'run.pt' with the weights and head it saved; {given[0]} only starts a new run: "
            f"leave {given[0]} out to resume, or leave --resume out to start again",
        )
