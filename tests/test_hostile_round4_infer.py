"""Regression tests for the hostile cases of issue 30 (round 4): each one failed before its fix."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.inputs import expand_inputs
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli, two_class_model

# nin-infer ------------------------------------------------------------------------------------------------
# The nin-infer cases: a command never destroys a file it did not create, never walks without end,
# never mixes two models' rows or reads a non-image array as images, and fails in one line.
# (The Node cases are in web/test/nin-edge.test.mjs.)

NIN_INFER = str(Path(sys.executable).with_name("nin-infer"))


@pytest.fixture
def m2(tmp_path) -> Path:
    """A 2-class model (RGB 16x16, labels cat and dog)."""
    return two_class_model(tmp_path / "m2.onnx")


@pytest.fixture
def imgs(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


# -- 1. data loss: a refused --resume leaves the file byte for byte; an output that is an input is refused --


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("user.csv", b"name,score\nalice,1\nbob,2", "it has columns name, score, not those nin-infer writes"),
        ("data.jsonl", b'{"user": "data", "n": 1}', "it holds no whole row"),
        ("arr.jsonl", b"[1,2,3]", "it holds no whole row"),
        ("two.jsonl", b'{"user": "data"}\n{"n": 1}', "it has columns user (line 1), not those nin-infer writes"),
        ("rows.jsonl", b"[1]\n[2]\n", "line 1 is a JSON list, not a row object"),
        ("latin1.csv", "caf\xe9,1\n".encode("latin-1"), "line 1 is not UTF-8 text"),
    ],
)
def test_resume_refuses_a_file_it_did_not_write_and_leaves_it_as_it_was(m2, imgs, tmp_path, name, content, message):
    out = tmp_path / name
    out.write_bytes(content)
    result = run_cli(infer_cli, [m2, imgs, "--resume", "-o", out])
    assert_one_line_error(result, f"cannot resume '{out}'", message, "--resume continues only an output nin-infer")
    assert out.read_bytes() == content


def test_an_output_that_is_one_of_the_inputs_is_refused_before_it_is_touched(m2, imgs, tmp_path):
    listed = tmp_path / "lst.csv"
    listed.write_text(f"{imgs / '0.png'}\n{imgs / '1.png'}\n")
    image = imgs / "0.png"
    before = {p: p.read_bytes() for p in (listed, image, m2)}
    cases = [
        (["--from-list", listed, "-o", listed], f"output '{listed}' is also this run's list file '{listed}'"),
        ([image, "-o", image, "--format", "csv"], f"output '{image}' is also this run's input '{image}'"),
        ([imgs, "-o", image, "--format", "csv"], f"output '{image}' is inside this run's input folder '{imgs}'"),
        ([str(imgs / "*.png"), "-o", image, "--format", "csv"], "is also this run's input"),
        ([image, "-o", m2, "--format", "csv"], f"output '{m2}' is also this run's model '{m2}'"),
        (["--from-list", listed, "-o", image, "--format", "csv"], f"is also this run's listed input '{image}'"),
    ]
    for args, message in cases:
        for flag in ("--overwrite", "--resume"):
            result = run_cli(infer_cli, [m2, *args, flag])
            assert_one_line_error(result, message, "choose another output file")
    assert {p: p.read_bytes() for p in before} == before


# -- 3. no hang: each real folder is walked once, an unreachable Ray cluster is an error in bounded time ----


def test_a_link_to_a_folder_above_is_walked_once(imgs, m2, tmp_path):
    (imgs / "self").symlink_to(".")
    (imgs / "sub").mkdir()
    (imgs / "sub" / "up").symlink_to("..")
    walked = list(itertools.islice(expand_inputs([str(imgs)]), 50))  # without end before the fix
    assert [item.name for item in walked] == [str(imgs / f"{i}.png") for i in range(3)]
    result = run_cli(infer_cli, [m2, imgs, "-o", tmp_path / "o.csv"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("3 images, 0 errors")


def _refused_port() -> int:
    """A local port nothing listens on (it was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is in the dev and ray extras")
def test_a_ray_cluster_that_cannot_be_reached_is_an_error_within_the_connect_timeout(m2, imgs, tmp_path):
    address = f"127.0.0.1:{_refused_port()}"
    args = [m2, imgs, "-o", tmp_path / "o.csv", "--engine", "ray", "--address", address, "--connect-timeout", "2"]
    # Ray alone retries for minutes; the bound here is far above the 2 s asked for, and only stops a hang.
    done = subprocess.run([NIN_INFER, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot reach the Ray cluster '{address}' within 2 s (Connection refused); check that its head "
        "runs and the port is open, or raise --connect-timeout"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is in the dev and ray extras")
@pytest.mark.parametrize(
    ("address", "hint"),
    [("garbage", ""), ("http://127.0.0.1:8265", " (that is the dashboard's or the job server's)"), ("h:99999", "")],
)
def test_a_ray_address_that_is_not_one_is_one_line(m2, imgs, tmp_path, address, hint):
    result = run_cli(infer_cli, [m2, imgs, "-o", tmp_path / "o.csv", "--engine", "ray", "--address", address])
    assert_one_line_error(
        result,
        f"--address '{address}' is not a Ray cluster address{hint}; give auto, HOST:PORT of the head (port 6379 "
        "by default) or ray://HOST:PORT for Ray Client (port 10001 by default)",
    )
    assert not (tmp_path / "o.csv").exists()


# -- 4. wrong answers: arrays that are not images, another model's rows ----------------------------------


def test_an_array_that_is_neither_an_image_nor_a_stack_is_an_error_row_naming_its_shape(m2, tmp_path):
    shapes = {"two.npy": (16, 16, 2), "stack2.npy": (2, 16, 16, 2), "stack9.npy": (2, 16, 16, 9), "5d.npy": (1,) * 5}
    for name, shape in shapes.items():
        np.save(tmp_path / name, np.zeros(shape, np.uint8))
    np.save(tmp_path / "rgb.npy", np.zeros((16, 16, 3), np.uint8))
    out = tmp_path / "o.csv"
    result = run_cli(infer_cli, [m2, *(tmp_path / n for n in [*shapes, "rgb.npy"]), "-o", out])
    assert_one_line_error(result, "4 of 5 images failed", progress=True)
    with open(out, newline="") as fh:
        rows = {row["input"]: row for row in csv.DictReader(fh)}
    assert list(rows) == [str(tmp_path / n) for n in [*shapes, "rgb.npy"]]
    for name, shape in shapes.items():
        assert rows[str(tmp_path / name)]["error"].startswith(
            f"array file '{tmp_path / name}' has shape {shape}, neither an image nor a stack of images; "
            "expected uint8 images (H,W), (H,W,C), (N,H,W) or (N,H,W,C) with C 1, 3 or 4"
        )
    assert rows[str(tmp_path / "rgb.npy")]["label"] in ("cat", "dog")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_rows_record_their_model_and_resume_refuses_another(m2, imgs, tiny_nin_path, tmp_path, suffix):
    out = tmp_path / f"o{suffix}"
    first = run_cli(infer_cli, [tiny_nin_path, imgs / "0.png", imgs / "1.png", "-o", out])
    assert first.exit_code == 0, first.stderr
    before = out.read_bytes()
    ten = Classifier(tiny_nin_path, "cpu").sha256[:16]
    two = Classifier(m2, "cpu").sha256[:16]
    result = run_cli(infer_cli, [m2, imgs, "-o", out, "--resume"])
    where = "row 1" if suffix == ".parquet" else "line 2" if suffix == ".csv" else "line 1"
    where = "row 2" if suffix == ".csv" else where
    assert_one_line_error(
        result,
        f"cannot resume '{out}': its {where} was written by another model (model_sha256 {ten}, this model's is "
        f"{two}); resume with that model, or write a new output for this one",
    )
    assert out.read_bytes() == before
    resumed = run_cli(infer_cli, [tiny_nin_path, imgs, "-o", out, "--resume"])
    assert resumed.exit_code == 0 and resumed.stderr.startswith("1 images, 0 errors, 2 skipped"), resumed.stderr


def test_rows_without_a_model_column_are_not_resumed(m2, imgs, tmp_path):
    out = tmp_path / "old.csv"
    out.write_text(f"input,label,index,probability,error\n{imgs / '0.png'},cat,0,0.6,\n")
    result = run_cli(infer_cli, [m2, imgs, "-o", out, "--resume"])
    assert_one_line_error(result, "its rows do not record the model that wrote them (no model_sha256 column")


# -- 5. no traceback -----------------------------------------------------------------------------------


def test_a_list_file_that_is_not_utf8_is_one_line(m2, imgs, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_bytes(f"{imgs / '0.png'}\n".encode() + b"\xff\xfe.png\n")
    result = run_cli(infer_cli, [m2, "--from-list", listed, "-o", tmp_path / "o.csv"])
    assert_one_line_error(
        result, f"line 2 of list file '{listed}' is not UTF-8 text; save the list as UTF-8", progress=True
    )


def test_resume_on_jsonl_rows_that_are_not_objects_is_one_line(m2, imgs, tmp_path):
    out = tmp_path / "o.jsonl"
    assert run_cli(infer_cli, [m2, imgs / "0.png", "-o", out]).exit_code == 0
    with open(out, "ab") as fh:
        fh.write(b'"text"\n')
    before = out.read_bytes()
    result = run_cli(infer_cli, [m2, imgs, "-o", out, "--resume"])
    assert_one_line_error(result, f"cannot resume '{out}': line 2 is a JSON str, not a row object")
    assert out.read_bytes() == before


def test_a_npy_header_with_a_negative_dimension_is_an_error_row(m2, tmp_path):
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 16, 16), }"
    header += " " * (117 - len(header)) + "\n"
    bad = tmp_path / "neg.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(256))
    result = run_cli(infer_cli, [m2, bad, "-o", tmp_path / "o.csv"])
    assert_one_line_error(
        result,
        f"cannot read array file '{bad}': its header claims an impossible shape (a negative dimension?)",
        progress=True,
    )


def test_file_names_that_are_not_utf8_are_written_escaped_and_resumed(m2, imgs, tmp_path):
    odd = os.fsdecode(bytes(imgs) + b"/b\xffd.png")
    os.rename(imgs / "1.png", odd)
    for suffix in (".csv", ".jsonl"):
        out = tmp_path / f"o{suffix}"
        result = run_cli(infer_cli, [m2, imgs, "-o", out])
        assert result.exit_code == 0 and result.stderr.startswith("3 images, 0 errors"), result.stderr
        text = out.read_text(encoding="utf-8")  # valid UTF-8: the odd byte is written as an escape
        if suffix == ".jsonl":
            names = [json.loads(line)["input"] for line in text.splitlines()]
        else:
            names = [row["input"] for row in csv.DictReader(text.splitlines())]
        assert names == [f"{imgs}/0.png", f"{imgs}/2.png", f"{imgs}/b\\xffd.png"]
        resumed = run_cli(infer_cli, [m2, imgs, "-o", out, "--resume"])
        assert resumed.stderr.startswith("0 images, 0 errors, 3 skipped"), resumed.stderr
