"""nin_edge.runtime: import boundary, providers, input forms, validation, threads, softmax."""

from __future__ import annotations

import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from nin_edge.runtime import (
    Classifier,
    ConfigError,
    InputError,
    ModelFileError,
    ProviderError,
    softmax,
)
from nin_edge.runtime import preprocess as preprocess_module
from onnx import TensorProto, helper
from PIL import Image

from tests.conftest import foreign_model, he_init_nin

CPU_ONLY = ort.get_available_providers()


@pytest.fixture(scope="module")
def clf(tiny_nin_path):
    return Classifier(tiny_nin_path, "cpu")


@pytest.fixture(scope="module")
def torch_nin():
    return he_init_nin()


def reference_logits(model, images_uint8):
    """Independent reference: torch's bilinear resize of [0,1] grayscale images, then the torch model."""
    x = torch.stack([torch.from_numpy(im.astype(np.float32) / 255.0)[None] for im in images_uint8])
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return model(x).numpy()


def fashion_like(seed: int, size: int = 28) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    top, left = rng.integers(0, size // 2, 2)
    img[top : top + size // 2, left : left + size // 3] = rng.integers(80, 255)
    return img


# -- the import boundary ------------------------------------------------------------------------


def test_runtime_import_loads_no_torch_onnx_or_onnxsim():
    code = (
        "import sys, nin_edge.runtime\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxsim', 'PIL', 'click'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- providers -----------------------------------------------------------------------------------


def test_cpu_and_auto_run_on_cpu_here(tiny_nin_path):
    assert Classifier(tiny_nin_path, "cpu").providers == ["CPUExecutionProvider"]
    assert Classifier(tiny_nin_path, "auto").providers == ["CPUExecutionProvider"]
    assert Classifier(tiny_nin_path, ["CPUExecutionProvider"]).providers == ["CPUExecutionProvider"]
    assert Classifier(tiny_nin_path, [("cpu", {})]).providers == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in CPU_ONLY, reason="this onnxruntime build has CUDA")
@pytest.mark.parametrize(
    ("request_", "name"), [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")]
)
def test_missing_provider_is_refused_with_what_exists(tiny_nin_path, request_, name):
    with pytest.raises(ProviderError) as err:
        Classifier(tiny_nin_path, request_)
    msg = str(err.value)
    assert f"execution provider {name} is not available" in msg
    assert "CPUExecutionProvider" in msg and "onnxruntime-gpu" in msg
    if request_ == "tensorrt":
        assert "tensorrt" in msg.split(";")[-1]


@pytest.mark.skipif("CUDAExecutionProvider" in CPU_ONLY, reason="this onnxruntime build has CUDA")
def test_fallback_warns_and_records(tiny_nin_path):
    with pytest.warns(RuntimeWarning, match="falling back to CPUExecutionProvider"):
        clf = Classifier(tiny_nin_path, "cuda", fallback=True)
    assert clf.providers == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider is not available" in clf.fallback_reason
    assert clf.describe().fallback_reason == clf.fallback_reason


def test_silently_dropped_gpu_provider_is_caught(tiny_nin_path, monkeypatch):
    # onnxruntime-gpu lists CUDA as available even when its libraries fail to load, then quietly
    # runs on CPU. Simulate that: CUDA "available", but the real session cannot enable it.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ProviderError, match="onnxruntime did not enable CUDAExecutionProvider") as err:
            Classifier(tiny_nin_path, "cuda")
        # the reason names the cause found on this machine: a CPU build of onnxruntime
        assert "this onnxruntime is a CPU build (onnxruntime 1." in str(err.value)
        assert "pip install 'nin-edge[gpu]'" in str(err.value)
        with pytest.warns(RuntimeWarning, match="did not enable CUDAExecutionProvider"):
            clf = Classifier(tiny_nin_path, "cuda", fallback=True)
    assert clf.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("provider", "message"),
    [("tpu", "provider 'tpu' is not known"), ([], "the provider list is empty"), ([("cpu", 3)], "neither a name nor")],
)
def test_bad_provider_requests(tiny_nin_path, provider, message):
    with pytest.raises(ConfigError, match=message):
        Classifier(tiny_nin_path, provider)


# -- session options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": 0}, "threads must be a positive whole number or None, got 0"),
        ({"graph_optimization": "max"}, "graph_optimization must be one of disable, basic, extended, all"),
        ({"max_batch": 0}, "max_batch must be a positive whole number"),
        ({"cudnn_conv_algo_search": "FAST"}, "cudnn_conv_algo_search must be one of HEURISTIC"),
        ({"device_id": -1}, "device_id must be a whole number >= 0"),
        ({"gpu": 1}, "Classifier has no option 'gpu'"),
    ],
)
def test_bad_options(tiny_nin_path, options, message):
    with pytest.raises(ConfigError, match=message):
        Classifier(tiny_nin_path, "cpu", **options)


def test_threads_and_levels_give_the_same_logits(tiny_nin_path, clf):
    x = np.random.default_rng(0).random((3, 1, 224, 224), dtype=np.float32)
    ref = clf.logits(x)
    for options in ({"threads": 1, "inter_op_threads": 1, "spinning": False}, {"graph_optimization": "disable"}):
        np.testing.assert_allclose(Classifier(tiny_nin_path, "cpu", **options).logits(x), ref, atol=1e-5)


def test_optimized_model_cache_is_written_then_used(tiny_nin_path, tmp_path, clf):
    first = Classifier(tiny_nin_path, "cpu", optimized_model_dir=str(tmp_path))
    cached = list(tmp_path.glob("*.onnx"))
    assert len(cached) == 1 and "-all-ort" in cached[0].name
    optimized_nodes = len(onnx.load(str(cached[0])).graph.node)
    assert optimized_nodes < 29  # onnxruntime fused Conv+Relu
    mtime = cached[0].stat().st_mtime_ns
    second = Classifier(tiny_nin_path, "cpu", optimized_model_dir=str(tmp_path))
    assert cached[0].stat().st_mtime_ns == mtime
    x = np.random.default_rng(1).random((2, 1, 224, 224), dtype=np.float32)
    np.testing.assert_allclose(second.logits(x), first.logits(x), atol=1e-6)
    np.testing.assert_allclose(second.logits(x), clf.logits(x), atol=1e-5)
    with pytest.raises(ConfigError, match="does not exist"):
        Classifier(tiny_nin_path, "cpu", optimized_model_dir=str(tmp_path / "nope"))


# -- input forms --------------------------------------------------------------------------------


@pytest.mark.slow
def test_uint8_images_match_an_independent_torch_pipeline(nin_path, torch_nin):
    # End to end: the library's export of a real NiN, run from raw pixels, against torch.
    exported = Classifier(nin_path, "cpu")
    images = [fashion_like(i) for i in range(3)]
    np.testing.assert_allclose(exported.logits(images), reference_logits(torch_nin, images), atol=1e-4)
    assert not np.allclose(exported.logits(images[0]), exported.logits(images[1]), atol=1e-3)


def test_every_input_form_agrees(clf, tmp_path):
    gray = [fashion_like(i) for i in range(4)]
    ref = clf.logits(gray)
    stack = np.stack(gray)
    np.testing.assert_allclose(clf.logits(stack[..., None]), ref, atol=1e-6)  # (N,H,W,C)
    np.testing.assert_allclose(clf.logits(gray[2]), ref[2:3], atol=1e-6)  # one (H,W)
    np.testing.assert_allclose(clf.logits(gray[2][..., None]), ref[2:3], atol=1e-6)  # one (H,W,1)
    rgb = np.repeat(gray[1][..., None], 3, axis=2)
    np.testing.assert_allclose(clf.logits(rgb), ref[1:2], atol=1e-4)  # (H,W,3) with equal channels
    rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], axis=2)
    np.testing.assert_allclose(clf.logits(rgba), ref[1:2], atol=1e-4)
    tensor = clf.prepare(gray)
    assert tensor.dtype == np.float32 and tensor.shape == (4, 1, 224, 224)
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    np.testing.assert_allclose(clf.logits(tensor), ref, atol=1e-6)  # (N,C,H,W)
    np.testing.assert_allclose(clf.logits(tensor[3]), ref[3:4], atol=1e-6)  # (C,H,W)
    np.testing.assert_allclose(clf.logits(list(tensor)), ref, atol=1e-6)  # list of (C,H,W)
    np.testing.assert_allclose(clf.logits([tensor[:2], tensor[2]]), ref[:3], atol=1e-6)  # list of batches and images
    png, jpg = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(gray[0]).save(png)
    Image.fromarray(gray[3]).convert("RGB").save(jpg, quality=100)
    np.testing.assert_allclose(clf.logits(png), ref[0:1], atol=1e-6)
    np.testing.assert_allclose(clf.logits([str(png), jpg]), np.concatenate([ref[0:1], clf.logits(jpg)]), atol=1e-6)
    assert np.abs(clf.logits(jpg) - ref[3:4]).max() < 0.05  # JPEG is lossy, but close


def test_images_of_any_size_are_resized(clf):
    big = np.kron(fashion_like(5), np.ones((8, 8), np.uint8))  # 224x224: no resize needed
    small = fashion_like(5)
    odd = np.asarray(Image.fromarray(small).resize((41, 37), Image.NEAREST))
    out = clf.logits([small, big, odd])
    assert out.shape == (3, 10)
    assert np.abs(out[0] - out[1]).max() < 0.5  # same picture at two scales


def test_large_batches_are_split(tiny_nin_path, clf):
    x = np.random.default_rng(2).random((11, 1, 224, 224), dtype=np.float32)
    small = Classifier(tiny_nin_path, "cpu", max_batch=4)
    calls = []
    real_run = ort.InferenceSession.run

    def spy(session, names, feed, *rest):
        if session is small.session:
            calls.append(feed["input"].shape[0])
        return real_run(session, names, feed, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ort.InferenceSession, "run", spy)
        split = small.logits(x)
    np.testing.assert_allclose(split, clf.logits(x), atol=1e-5)
    assert calls == [4, 4, 3]


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            np.zeros((2, 3, 32, 32), np.float64),
            "input 'input': expected float32 (N,1,224,224) or (1,224,224), or uint8 images, got float64 (2, 3, 32, 32)",
        ),
        (
            np.zeros((2, 3, 224, 224), np.float32),
            "input 'input': expected float32 (N,1,224,224), got float32 (2, 3, 224, 224)",
        ),
        (np.zeros((2, 1, 100, 100), np.float32), "expected float32 (N,1,224,224), got float32 (2, 1, 100, 100)"),
        (np.zeros((0, 1, 224, 224), np.float32), "got float32 (0, 1, 224, 224)"),
        (np.zeros((224, 224), np.float32), "got float32 (224, 224)"),
        (np.zeros((3, 224, 224), np.float32), "got float32 (3, 224, 224)"),
        (
            np.zeros((5, 28, 28), np.uint8),
            "expected one image as (H,W) or (H,W,C) with C in 1, 3 or 4, got uint8 (5, 28, 28)",
        ),
        (np.zeros((28, 28), np.int32), "got int32 (28, 28)"),
        ([], "got an empty list"),
        ([np.zeros((28, 28), np.uint8), 3], "item 1 is a int; expected a uint8 array or an image file path"),
        ([np.zeros((28, 28), np.uint16)], "raw images must be uint8, got uint16"),
        (np.zeros((0, 5), np.uint8), "image is empty"),
        ({"x": 1}, "got dict"),
        ("missing.png", "image file 'missing.png' does not exist"),
    ],
)
def test_bad_inputs_say_what_was_expected(clf, batch, message):
    with pytest.raises(InputError) as err:
        clf.logits(batch)
    assert message in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(clf, bad):
    x = np.zeros((2, 1, 224, 224), np.float32)
    x[1, 0, 5, 5] = bad
    with pytest.raises(InputError, match="1 value is NaN or infinite"):
        clf.logits(x)


def test_huge_images_are_refused_before_decoding(clf, tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(path)
    monkeypatch.setattr(preprocess_module, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(InputError, match="big.png.: image of 120x100 pixels exceeds the limit of 10,000"):
        clf.logits(path)
    with pytest.raises(InputError, match="image of 120x100 pixels exceeds the limit of 10,000"):
        clf.logits(np.zeros((100, 120), np.uint8))


def test_corrupt_image_file(clf, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=f"cannot read image '{path}'"):
        clf.logits(path)


# -- model files --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, 5, 2.5, ["nin.onnx"]])
def test_model_of_the_wrong_type_is_refused(model):
    with pytest.raises(
        ModelFileError, match=f"model must be a path or the bytes of an ONNX file, got {type(model).__name__}"
    ):
        Classifier(model)


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="model file '.*nope.onnx' does not exist"):
        Classifier(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelFileError, match="onnxruntime cannot load model '.*bad.onnx'"):
        Classifier(bad)
    with pytest.raises(ModelFileError, match="onnxruntime cannot load model '<bytes>'"):
        Classifier(b"\x00\x01garbage")


def test_foreign_model_needs_labels(tmp_path):
    path = foreign_model(tmp_path / "foreign.onnx")
    with pytest.raises(ModelFileError, match="has no nin-edge metadata"):
        Classifier(path)
    clf = Classifier(path, labels=["a", "b", "c"])
    assert clf.input_shape == (1, 8, 8) and clf.metadata.input_name == "pixels"
    out = clf.classify(np.ones((2, 1, 8, 8), np.float32), top_k=3)
    assert [p.label for p in out[0]] == ["c", "b", "a"]
    with pytest.raises(ModelFileError, match="gives 3 logits but has 2 labels"):
        Classifier(path, labels=["a", "b"])


def test_foreign_model_of_wrong_rank(tmp_path):
    x = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["v"], ["s"])], "flat", [x], [y])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelFileError, match=r"input must be \(N,C,H,W\)"):
        Classifier(path, labels=list("abcd"))


# -- outputs ------------------------------------------------------------------------------------


def test_classify_returns_top_k_per_image(clf):
    images = [fashion_like(i) for i in range(3)]
    result = clf.classify(images, top_k=4)
    assert len(result) == 3 and all(len(r) == 4 for r in result)
    probs = clf.probabilities(images)
    for row, preds in zip(probs, result, strict=False):
        assert [p.index for p in preds] == list(np.argsort(-row)[:4])
        assert all(p.label == clf.labels[p.index] for p in preds)
        assert preds[0].probability == pytest.approx(row.max())
        assert preds[0].probability >= preds[1].probability >= preds[3].probability
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    for k in (0, 11, 2.0):
        with pytest.raises(ConfigError, match="top_k must be a whole number from 1 to 10"):
            clf.classify(images, top_k=k)


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [-1e30, -1e30, -1e30], [3.0, 3.0, 3.0]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p[2], [1 / 3] * 3)


def test_describe(clf):
    d = clf.describe()
    assert d.model == "nin_tiny" and d.precision == "fp32" and d.opset == 17
    assert d.input_shape == ("batch", 1, 224, 224) and d.providers == ("CPUExecutionProvider",)
    assert d.labels[9] == "Ankle boot" and d.weights == "test fixture: He init, seed 7"
    assert "providers      CPUExecutionProvider" in d.to_table()
    assert d.to_dict()["preprocessing"]["color"] == "grayscale"


def test_one_classifier_is_safe_to_share_between_threads(clf):
    batches = [[fashion_like(10 * i + j) for j in range(1 + i % 3)] for i in range(12)]
    serial = [clf.logits(b) for b in batches]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(clf.logits, batches))
    for a, b in zip(serial, parallel, strict=False):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("value", "bounds", "whole"),
    [
        (3, {}, True),
        (0, {"minimum": 1}, False),
        (True, {}, False),
        (2.0, {}, False),
        ("3", {}, False),
        (7, {"minimum": 1, "maximum": 7}, True),
        (8, {"minimum": 1, "maximum": 7}, False),
        (-1, {"minimum": 0}, False),
    ],
)
def test_the_one_whole_number_test(value, bounds, whole):
    from nin_edge.runtime.core.numbers import is_whole_number

    assert is_whole_number(value, **bounds) is whole
