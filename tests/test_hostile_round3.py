"""Regression tests for the hostile cases of issue 23 (round 3): each one failed before its fix."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nin_edge.export.cli import main as export_cli
from nin_edge.runtime import Classifier
from nin_edge.runtime.bundle import BUNDLE_FOLDER, FORMAT, MANIFEST
from nin_edge.runtime.cli.infer import main as infer_cli
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.core.files import atomic_folder, check_replaceable_folder

from tests.conftest import assert_one_line_error, run_cli

EXPORT = ["--random-init", "--input-size", 70, "--check-batch-sizes", 1]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def fake_bundle(folder: Path, files: dict[str, bytes] | None = None, **manifest) -> Path:
    """A folder with ``files`` and a manifest that lists them with their sha256, as nin-export writes it."""
    files = {"model.onnx": b"model bytes", "MODEL_CARD.md": b"# card\n"} if files is None else files
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    listed = {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in files.items()}
    body = {"format": FORMAT, "format_version": 1, "files": listed, "models": {}, **manifest}
    (folder / MANIFEST).write_text(json.dumps(body))
    return folder


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- 1/2. a bundle folder is replaced only when it holds nothing but what its manifest lists -------


def test_a_copied_manifest_does_not_make_a_project_folder_replaceable(tmp_path):
    bundle = fake_bundle(tmp_path / "bundle")
    project = tmp_path / "myproject"
    project.mkdir()
    (project / "main.c").write_text("int main(void) { return 0; }\n")
    (project / MANIFEST).write_bytes((bundle / MANIFEST).read_bytes())
    before = _contents(project)
    result = run_cli(export_cli, [*EXPORT, "--bundle", project])
    assert_one_line_error(
        result,
        f"bundle folder '{project}' holds 'main.c', which its manifest.json does not list: not replacing it; "
        "nin-edge replaces only a folder it wrote",
    )
    assert _contents(project) == before


def test_a_file_the_user_added_to_a_bundle_or_changed_in_it_is_never_removed(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    (bundle / "DEPLOY_NOTES.txt").write_text("ask ops before deploying\n")
    before = _contents(bundle)
    assert_one_line_error(
        run_cli(export_cli, [*EXPORT, "--bundle", bundle]), "holds 'DEPLOY_NOTES.txt', which its manifest.json"
    )
    assert _contents(bundle) == before
    (bundle / "DEPLOY_NOTES.txt").unlink()
    (bundle / "MODEL_CARD.md").write_text("# card, edited by hand\n")
    with pytest.raises(ConfigError, match="'MODEL_CARD.md' was changed since it was written"):
        check_replaceable_folder(bundle, BUNDLE_FOLDER)
    (bundle / "MODEL_CARD.md").unlink()
    (bundle / "sub").mkdir()
    with pytest.raises(ConfigError, match="holds 'sub', which its manifest.json does not list"):
        check_replaceable_folder(bundle, BUNDLE_FOLDER)


def test_an_unaltered_bundle_or_an_empty_folder_is_replaced_whole(tmp_path):
    for folder in (fake_bundle(tmp_path / "b"), tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        with atomic_folder(folder, BUNDLE_FOLDER) as tmp:
            fake_bundle(tmp, {"model.int8.onnx": b"new"})
        assert set(_contents(folder)) == {"model.int8.onnx", MANIFEST}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "empty"]


def test_a_failed_build_leaves_the_folder_as_it_was(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    before = _contents(bundle)
    with pytest.raises(RuntimeError, match="disk full"), atomic_folder(bundle, BUNDLE_FOLDER) as tmp:
        (tmp / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert _contents(bundle) == before and [p.name for p in tmp_path.iterdir()] == ["b"]


# -- 3. a link to a bundle is followed, and the link stays --------------------------------------------


def test_a_link_to_a_bundle_is_followed_and_stays_a_link(tmp_path):
    real = fake_bundle(tmp_path / "v1")
    link = tmp_path / "current"
    link.symlink_to(real)
    with atomic_folder(link, BUNDLE_FOLDER) as tmp:
        fake_bundle(tmp, {"model.onnx": b"rebuilt"})
    assert link.is_symlink() and link.resolve() == real
    assert (real / "model.onnx").read_bytes() == b"rebuilt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "v1"]


def test_a_link_to_a_file_or_nowhere_is_refused_before_anything_is_touched(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "to-file").symlink_to(tmp_path / "notes.txt")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    assert_one_line_error(
        run_cli(export_cli, [*EXPORT, "--bundle", tmp_path / "to-file"]),
        f"bundle '{tmp_path / 'to-file'}' exists and is a regular file, not a folder",
    )
    assert_one_line_error(
        run_cli(export_cli, [*EXPORT, "--bundle", tmp_path / "dangling"]), "is a link to", "which does not exist"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "notes.txt", "to-file"]
    with pytest.raises(ConfigError, match=f"bundle's parent folder '{tmp_path / 'no'}' does not exist"):
        check_replaceable_folder(tmp_path / "no" / "b", BUNDLE_FOLDER)


# -- 4. build folders of killed builds are removed by the next build ----------------------------------


def test_build_folders_of_killed_builds_are_removed_by_the_next_build(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".b.nin-edge-{dead}-k1ll3d.tmp", tmp_path / f".b.nin-edge-{dead}.tmp"]  # 0.x naming too
    stale.append(tmp_path / f".b.nin-edge-{dead}-sw4p.tmp.old")  # killed after the swap: b exists again
    running = tmp_path / f".b.nin-edge-{alive}-busy.tmp"
    for folder in (*stale, running):
        fake_bundle(folder, {"model.onnx": b"x" * 1000})
    with atomic_folder(bundle, BUNDLE_FOLDER) as tmp:
        fake_bundle(tmp, {"model.onnx": b"new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "b"]


def test_a_set_aside_bundle_is_kept_while_it_is_the_only_copy(tmp_path):
    aside = fake_bundle(tmp_path / f".b.nin-edge-{_dead_pid()}-sw4p.tmp.old")
    with atomic_folder(tmp_path / "other", BUNDLE_FOLDER) as tmp:
        fake_bundle(tmp)
    from nin_edge.runtime.core.files import remove_stale_temporaries

    assert remove_stale_temporaries(tmp_path / "b") == [] and aside.is_dir()


# -- 13. manifests are checked against their schema ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"files": {"model.onnx": None}}, 'files["model.onnx"] must be an object'),
        ({"files": {"model.onnx": "abc"}}, 'files["model.onnx"] must be an object'),
        ({"files": {"model.onnx": {"sha256": 5, "bytes": 3}}}, 'files["model.onnx"].sha256 must be 64 lowercase hex'),
        ({"files": {"model.onnx": {"sha256": "0" * 64, "bytes": "3"}}}, 'files["model.onnx"].bytes must be a whole'),
        ({"files": {"../x": {"sha256": "0" * 64, "bytes": 3}}}, "the files entry '../x' must be a plain file name"),
        ({"models": {"fp32": "model.onnx"}}, 'models["fp32"] must be an object'),
        ({"models": {"fp32": {"onnx": 7}}}, 'models["fp32"].onnx must be a file name'),
        ({"labels": "abcdefghij"}, "labels must be a list of strings"),
        ({"format_version": True}, "format_version must be a positive integer, got True"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line_everywhere(tmp_path, change, message):
    bundle = fake_bundle(tmp_path / "b")
    manifest = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**manifest, **change}))
    with pytest.raises(ModelFileError, match="bundle manifest .*" + message.replace("[", r"\[").replace(".", r"\.")):
        Classifier(bundle, "cpu")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((28, 28), np.uint8))
    assert_one_line_error(run_cli(infer_cli, [bundle, x]), message)
    with pytest.raises(ModelFileError, match="bundle manifest"):
        check_replaceable_folder(bundle, BUNDLE_FOLDER)  # nor is it taken for a bundle that may be replaced


def test_a_huge_manifest_is_refused_before_it_is_read(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    with open(bundle / MANIFEST, "ab") as fh:
        fh.truncate(3 << 30)  # 3 GB, sparse: reading it would need 3 GB of memory
    with pytest.raises(ModelFileError, match=r"is 3,221,225,472 bytes; a nin-edge manifest is a few KB"):
        Classifier(bundle, "cpu")


# -- 5. nin-serve's front refuses what Triton's JSON parser would allocate before any check ----------


def test_the_front_refuses_claimed_shapes_over_what_the_model_takes():
    import gzip

    from nin_edge.runtime.serving.front import Limits, RequestRefused, check_infer_request

    limits = Limits(16 * 28 * 28, "16 images of 1x28x28")

    def check(header: dict, body: bytes | None = None, **headers: str) -> str:
        data = json.dumps(header).encode() if body is None else body
        try:
            check_infer_request(data, {k.replace("_", "-"): v for k, v in headers.items()}, limits)
        except RequestRefused as exc:
            return f"{exc.status} {exc}"
        return "ok"

    def tensor(shape: list) -> dict:
        return {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.0]}]}

    assert check(tensor([16, 1, 28, 28])) == "ok"  # Triton checks the data against the shape itself
    assert check(tensor([2**31, 1, 28, 28])) == (
        "400 input 'input': shape [2147483648, 1, 28, 28] claims 1,683,627,180,032 values; this server takes at "
        "most 16 images of 1x28x28 (12,544 values) per request"
    )
    assert check(tensor([1.5, 1, 28, 28])).startswith("400 input 'input': shape must be a list of whole numbers")
    assert check(tensor([-1, 1, 28, 28])) == "400 input 'input': shape [-1, 1, 28, 28] is not a tensor shape"
    twice = b'{"inputs": [{"name": "input", "shape": [2147483648, 1, 28, 28], "shape": [1, 1, 28, 28]}]}'
    assert check({}, twice) == "400 the request's JSON cannot be read: the key 'shape' appears twice in one object"
    # The binary form: only the JSON header before the tensor bytes is read.
    header = json.dumps(tensor([2**40, 1, 28, 28])).encode()
    binary = check({}, header + b"\0" * 64, Inference_Header_Content_Length=str(len(header)))
    assert binary.startswith("400 input 'input': shape [1099511627776, 1, 28, 28] claims")
    assert (
        check({}, gzip.compress(json.dumps(tensor([2**31, 1, 28, 28])).encode()), Content_Encoding="gzip")[:3] == "400"
    )
    bomb = gzip.compress(b" " * (limits.max_body + 10))  # a few KB that inflate past the body limit
    assert (
        check({}, bomb, Content_Encoding="gzip")
        == f"413 the request body inflates to more than {limits.max_body:,} bytes"
    )


# -- 7. the weight digest covers tensor values, not how they are stored ------------------------------


def test_a_model_resaved_with_external_data_is_verified_not_called_damaged(tiny_nin_path, tmp_path, monkeypatch):
    import onnx
    from nin_edge.export.cli import inspect_main

    model = onnx.load(str(tiny_nin_path))
    path = tmp_path / "nin.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="nin.onnx.data")
    assert (tmp_path / "nin.onnx.data").stat().st_size > path.stat().st_size  # the weights moved out
    clf = Classifier(path, "cpu")
    assert clf.weights_check.startswith("verified (graph sha256 ")
    monkeypatch.setattr("nin_edge.runtime.classifier.AUTO_VERIFY_BYTES", 20_000)  # the external 35 KB count
    assert Classifier(path, "cpu").weights_check.startswith("skipped: 0 MB is over the 0 MB that")
    monkeypatch.undo()
    x = np.random.default_rng(0).random((2, 1, 224, 224), dtype=np.float32)
    np.testing.assert_array_equal(clf.logits(x), Classifier(tiny_nin_path, "cpu").logits(x))
    result = run_cli(inspect_main, [path, "--no-layers", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["weights_check"] == "digest matches"

    data = bytearray((tmp_path / "nin.onnx.data").read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
    (tmp_path / "nin.onnx.data").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="its graph and weights do not match the digest recorded at export"):
        Classifier(path, "cpu")

    for tensor in model.graph.initializer:  # a location outside the model's folder is never read
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value="../secret.data")
    escaping = tmp_path / "escaping.onnx"
    escaping.write_bytes(model.SerializeToString())
    (tmp_path.parent / "secret.data").write_bytes(b"\0" * 40000)
    with pytest.raises(ModelFileError, match="External data path escapes model directory"):
        Classifier(escaping, "cpu")  # onnxruntime refuses it itself
    assert_one_line_error(
        run_cli(inspect_main, [escaping, "--no-layers"]), "external data location '../secret.data' is not a path inside"
    )


# -- 8/12. nin-inspect: what is not a model is said so; damaged text and odd models are no traceback --


def test_inspect_refuses_empty_files_device_links_and_bundles_nin_infer_refuses(tiny_nin_path, tmp_path):
    from nin_edge.export.cli import inspect_main

    (tmp_path / "zero.onnx").write_bytes(b"")
    assert_one_line_error(run_cli(inspect_main, [tmp_path / "zero.onnx"]), "zero.onnx' is empty (0 bytes)")
    (tmp_path / "nothing.onnx").write_bytes(b"\x08\x07")  # parses as a ModelProto with an IR version only
    assert_one_line_error(run_cli(inspect_main, [tmp_path / "nothing.onnx"]), "holds no graph")
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "model.onnx").symlink_to("/dev/zero")
    for target in (folder / "model.onnx", folder):
        assert_one_line_error(
            run_cli(inspect_main, [target]), "model.onnx' (a link to '/dev/zero') is a character device, not a model"
        )
    newer = fake_bundle(tmp_path / "newer", {"model.onnx": tiny_nin_path.read_bytes()}, format_version=99)
    assert_one_line_error(run_cli(inspect_main, [newer]), "has format version 99; this nin-edge reads up to 1")
    sound = fake_bundle(tmp_path / "sound", {"model.onnx": tiny_nin_path.read_bytes()})
    result = run_cli(inspect_main, [sound, "--no-layers"])
    assert result.exit_code == 0 and "nin-edge bundle, format 1: every file matches manifest.json" in result.stdout


def test_inspect_shows_damaged_metadata_text_and_models_it_cannot_profile(tiny_nin_path, tmp_path):
    import onnx
    from nin_edge.export.cli import inspect_main
    from onnx import TensorProto, helper

    data = bytearray(tiny_nin_path.read_bytes())
    data[data.find(b'{"color": "gray') + 12] = 0xFF  # not UTF-8 any more: protobuf returns bytes
    (tmp_path / "damaged.onnx").write_bytes(bytes(data))
    result = run_cli(inspect_main, [tmp_path / "damaged.onnx", "--no-layers"])
    assert result.exit_code == 0, result.stderr
    assert '{"color": "g\ufffdayscale"' in result.stdout

    a, b = (helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in "ab")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", [a, b], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "two.onnx"))
    result = run_cli(inspect_main, [tmp_path / "two.onnx", "--no-layers"])
    assert result.exit_code == 0, result.stderr
    assert "cannot run the model: profiling feeds one image input with fixed dimensions after the batch; model '" in (
        result.stdout
    )


# -- 16. sizes are checked against the memory this process can get before anything is read ------------


def test_a_gzip_bomb_posing_as_idx_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    import gzip

    from nin_edge.models.data import IMAGES_MAGIC, read_idx
    from nin_edge.runtime.core import files
    from nin_edge.runtime.core.errors import InputError

    header = bytes([0, 0, 8, 3]) + (3_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as fh:
        fh.write(header)
        fh.write(bytes(1 << 20))  # what follows could be gigabytes of zeros: it is never inflated
    monkeypatch.setattr(files, "memory_available", lambda: 1_000_000_000)
    with pytest.raises(InputError, match=r"claims images of shape \(3000000, 28, 28\)\) needs about 2.35 GB of memo"):
        read_idx(bomb, IMAGES_MAGIC)
    small = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    padded = tmp_path / "padded.gz"
    padded.write_bytes(gzip.compress(small + bytes(50 << 20), compresslevel=1))
    with pytest.raises(ModelFileError, match=r"it holds more data than its header \(10, 28, 28\) claims"):
        read_idx(padded, IMAGES_MAGIC)


def test_the_memory_budget_counts_ulimit_v():
    probe = (
        "import resource; from pathlib import Path\n"
        "from nin_edge.runtime.core.files import memory_available\n"
        "vm = next(int(l.split()[1]) * 1024 for l in Path('/proc/self/status').read_text().splitlines() "
        "if l.startswith('VmSize:'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (300 << 20), resource.RLIM_INFINITY))\n"
        "print(memory_available())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 200 << 20 < int(done.stdout) <= 300 << 20


def test_inspect_checks_a_file_size_before_reading_it(tiny_nin_path, tmp_path, monkeypatch):
    from nin_edge.export.cli import inspect_main
    from nin_edge.runtime.core import files

    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as fh:
        fh.truncate(3 << 30)  # sparse: 3 GB that reading whole would need in memory
    assert_one_line_error(
        run_cli(inspect_main, [huge]), "is 3,221,225,472 bytes; an ONNX file holds at most 2 GiB (protobuf's limit"
    )
    monkeypatch.setattr(files, "memory_available", lambda: 50_000)
    assert_one_line_error(run_cli(inspect_main, [tiny_nin_path]), "needs about 0.00 GB of memory; this process can")


# -- 9. a float32 TIFF (0..1) is scaled, not read as 0..255 -------------------------------------------


def test_float_tiffs_are_read_as_zero_to_one_or_refused(tmp_path):
    from nin_edge.runtime.core.errors import InputError
    from nin_edge.runtime.preprocess import read_image
    from PIL import Image

    pixels = np.random.default_rng(5).integers(0, 256, (20, 30)).astype(np.uint8)
    Image.fromarray(pixels.astype(np.float32) / 255.0, mode="F").save(tmp_path / "unit.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "unit.tif"), pixels)
    Image.fromarray(pixels.astype(np.float32), mode="F").save(tmp_path / "wide.tif")
    with pytest.raises(InputError, match=r"holds values from 0 to 255; float images are read as 0..1"):
        read_image(tmp_path / "wide.tif")
    nan = pixels.astype(np.float32) / 255.0
    nan[3, 4] = np.nan
    Image.fromarray(nan, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match="holds NaN or infinite values"):
        read_image(tmp_path / "nan.tif")


# -- 10. labels must be a list of strings -------------------------------------------------------------


@pytest.mark.parametrize("labels", ['"abcdefghij"', "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", '{"0": "a"}'])
def test_labels_that_are_not_a_list_of_strings_are_refused(tiny_nin_path, tmp_path, labels):
    import onnx

    model = onnx.load(str(tiny_nin_path))
    for prop in model.metadata_props:
        if prop.key == "labels":
            prop.value = labels
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match="has unreadable nin-edge metadata: labels must be a JSON list of strings"):
        Classifier(path, "cpu")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((28, 28), np.uint8))
    assert_one_line_error(run_cli(infer_cli, [path, x]), "labels must be a JSON list of strings, got")


# -- 11. Triton model names are checked as Triton needs them ------------------------------------------


@pytest.mark.parametrize("name", ["nin\nx", "nin x", "nin$", "ünï", "..", "a/b", ""])
def test_triton_names_must_be_plain(tmp_path, name):
    result = run_cli(
        export_cli, [*EXPORT, "--output", tmp_path / "m.onnx", "--triton-repo", tmp_path, "--triton-name", name]
    )
    assert_one_line_error(result, f"--triton-name {name!r}: expected a plain name of letters, digits, '_', '.', '-'")
    assert list(tmp_path.iterdir()) == []


# -- 14. a bad Triton URL is one line, not a traceback from tritonclient's __del__ ---------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::zz", "Triton URL 'http://[::zz' is not a valid URL: Invalid IPv6 URL"),
        ("http://host:99999", "Triton URL 'http://host:99999' is not a valid URL: Port out of range 0-65535"),
        ("ftp://host:80", "Triton URL 'ftp://host:80': expected http://HOST[:PORT] or https://HOST[:PORT]"),
    ],
)
def test_a_bad_triton_url_is_one_line(tiny_nin_path, tmp_path, monkeypatch, url, message):
    import gc

    pytest.importorskip("tritonclient.http", reason="the serve extra is not installed")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((224, 224), np.uint8))
    unraisable = []  # tritonclient's __del__ reported its AttributeError through this hook
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    result = run_cli(infer_cli, [tiny_nin_path, x, "--triton-url", url])
    gc.collect()
    assert_one_line_error(result, message)
    assert unraisable == []


# -- 15. a crafted training checkpoint is one line naming what does not fit ---------------------------


def _training_checkpoint(**change) -> dict:
    import torch
    from nin_edge.models.registry import create_model

    model = create_model("nin", input_size=70)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    payload = {
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 1,
        "history": [],
        "rng": torch.get_rng_state(),
    }
    return {**payload, **change}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", "key '0.0.weight' has shape (5, 1, 11, 11), expected (96, 1, 11, 11)"),
        ("no-optimizer-state", "its optimizer state cannot be loaded (KeyError: 'state')"),
        ("rng", "its rng state is torch.uint8 (10,), expected torch.get_rng_state()'s uint8 tensor"),
        ("history-type", "its history is a str, expected a list of epochs"),
        ("history-entry", "history entry 0 is \"{'epoch': 1}\", expected the fields epoch, train_loss"),
        ("epoch", "its epoch is 1.5, expected a whole number >= 0"),
        ("state-type", "its state_dict is a Tensor, not a dict of tensors"),
        ("card", "has an unreadable card: 'preprocessing'"),
        ("card-classes", "was trained on 3 classes, "),
        ("split", "the validation images of"),
    ],
)
def test_resume_from_a_crafted_checkpoint_is_one_line(tiny_fashion, tmp_path, change, message):
    import torch
    from nin_edge.models.cli import train_main

    payload = _training_checkpoint()
    if change == "shape":
        payload["state_dict"]["0.0.weight"] = torch.zeros(5, 1, 11, 11)
    elif change == "no-optimizer-state":
        del payload["optimizer"]["state"]
    elif change == "rng":
        payload["rng"] = torch.zeros(10, dtype=torch.uint8)
    elif change == "history-type":
        payload["history"] = "abc"
    elif change == "history-entry":
        payload["history"] = [{"epoch": 1}]
    elif change == "epoch":
        payload["epoch"] = 1.5
    elif change == "card":
        payload["card"] = {"labels": ["a", "b"], "in_channels": 1, "input_size": 70}
    elif change == "card-classes":
        pre = {"color": "grayscale", "resize": "bilinear", "scale": 1 / 255, "mean": [0.0], "std": [1.0]}
        payload["card"] = {"labels": ["a", "b", "c"], "in_channels": 1, "input_size": 70, "preprocessing": pre}
    elif change == "split":  # another held-out list than the data gives
        payload["data"] = {"kind": "idx", "val_fraction": 0.1, "seed": 0, "val_sha256": "0" * 64}
    else:
        payload["state_dict"] = torch.zeros(3)
    ckpt = tmp_path / "crafted.pt"
    torch.save(payload, ckpt)
    args = ["--data", tiny_fashion, "--input-size", 70, "--train-limit", 16, "--test-limit", 8, "--no-plot"]
    result = run_cli(train_main, [*args, "--epochs", 2, "--output", tmp_path / "o.pt", "--resume", ckpt])
    assert_one_line_error(result, message)
    assert not (tmp_path / "o.pt").exists()


# -- Also: the model card names the data and its source and shows the checker's verdicts as a table ----


def test_the_card_names_the_training_data_not_a_path_and_tabulates_the_mobile_checker():
    from types import SimpleNamespace

    from nin_edge.export import ExportConfig
    from nin_edge.export.bundle_card import usability_table
    from nin_edge.export.targets import bundle as bundle_mod

    training = bundle_mod._training(
        ExportConfig(model="nin"), SimpleNamespace(weights="pretrained nin_fashion_mnist.pt")
    )
    assert training["data"].startswith("Fashion-MNIST by Zalando Research (https://github.com/zalandoresearch/")
    assert "shared/data" not in json.dumps(training)
    shipped = Path(__file__).parents[1] / "benchmarks/results/2026-11-26-cpu/bundle-amd/manifest.json"
    lines = json.loads(shipped.read_text())["mobile_usability"]
    assert len(lines) == 27
    assert usability_table(lines) == [
        "| `model.onnx` | NNAPI | no (0/29 nodes, 0 partitions) | yes (29/29 nodes, 1 partition) |",
        "| `model.onnx` | CoreML NeuralNetwork | no (0/29 nodes, 0 partitions) | yes (29/29 nodes, 1 partition) |",
        "| `model.onnx` | CoreML MLProgram | no (0/29 nodes, 0 partitions) | yes (29/29 nodes, 1 partition) |",
        "| `model.mobile.onnx` | NNAPI | yes (29/29 nodes, 1 partition) | - |",
        "| `model.mobile.onnx` | CoreML NeuralNetwork | yes (29/29 nodes, 1 partition) | - |",
        "| `model.mobile.onnx` | CoreML MLProgram | yes (29/29 nodes, 1 partition) | - |",
    ]


def test_the_front_checks_every_request_that_may_carry_tensors():
    from nin_edge.runtime.serving.front import _may_carry_tensors

    tensors = json.dumps({"inputs": [{"name": "input", "shape": [1]}]}).encode()
    assert _may_carry_tensors("/v2/models/nin/inf%65r", b"", {})  # Triton may decode what we do not
    assert _may_carry_tensors("/v2/models/nin/infer/", b"", {})
    assert _may_carry_tensors("/v2/repository/models/nin/load", tensors, {})  # any JSON with "inputs"
    assert _may_carry_tensors("/v2/repository/index", b"\x1f\x8b...", {"Content-Encoding": "gzip"})
    assert not _may_carry_tensors("/v2/repository/index", b'{"ready": true}', {})
    assert not _may_carry_tensors("/v2/systemsharedmemory/region/x/register", b"not json", {})
