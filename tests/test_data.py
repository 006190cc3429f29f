"""The IDX reader: plain and gzipped files, torchvision's layout, and every broken file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nin_edge.models import model_card
from nin_edge.models.data import IMAGES_MAGIC, LABELS_MAGIC, find_split_files, load_split, read_idx, to_model_input
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.core.metadata import Preprocessing
from nin_edge.runtime.preprocess import preprocess_image, resize_bilinear

from tests.conftest import write_idx


def test_reads_plain_and_gzipped(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "a", images)
    write_idx(tmp_path / "b.gz", images, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a", IMAGES_MAGIC), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz", IMAGES_MAGIC), images)


def test_load_split_finds_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([1, 2, 9]))
    split = load_split(tmp_path, "test")
    assert split.images.shape == (3, 28, 28) and split.labels.tolist() == [1, 2, 9]
    assert split.labels.dtype == np.int64
    assert find_split_files(tmp_path, "test")[0] == raw / "t10k-images-idx3-ubyte"


def test_tiny_fixture_loads(tiny_fashion):
    assert len(load_split(tiny_fashion, "train")) == 96
    assert len(load_split(tiny_fashion, "test", limit=7)) == 7


def test_truncated_file(tmp_path):
    write_idx(tmp_path / "x", np.zeros((4, 28, 28)))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-10])
    with pytest.raises(
        ModelFileError, match=r"is truncated or padded: 3,142 bytes, its header \(4, 28, 28\) needs 3,152"
    ):
        read_idx(tmp_path / "x", IMAGES_MAGIC)
    (tmp_path / "y").write_bytes(b"\x00\x00")
    with pytest.raises(ModelFileError, match="not even a header"):
        read_idx(tmp_path / "y", IMAGES_MAGIC)


def test_truncated_gzip(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((4, 28, 28)), gz=True)
    (tmp_path / "x.gz").write_bytes((tmp_path / "x.gz").read_bytes()[:-12])
    with pytest.raises(ModelFileError, match="cannot read IDX file"):
        read_idx(tmp_path / "x.gz", IMAGES_MAGIC)


def test_wrong_magic(tmp_path):
    write_idx(tmp_path / "labels", np.array([1, 2, 3]))
    with pytest.raises(ModelFileError, match="has magic number 0x00000801, expected 0x00000803 for images"):
        read_idx(tmp_path / "labels", IMAGES_MAGIC)
    assert read_idx(tmp_path / "labels", LABELS_MAGIC).tolist() == [1, 2, 3]


def test_count_mismatch_and_bad_labels(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2]))
    with pytest.raises(ModelFileError, match="has 3 images but .* has 2 labels"):
        load_split(tmp_path, "train")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2, 12]))
    with pytest.raises(ModelFileError, match="has label 12"):
        load_split(tmp_path, "train")


def test_missing_files_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="no Fashion-MNIST test files in"):
        load_split(tmp_path, "test")
    with pytest.raises(ConfigError, match="does not exist"):
        load_split(tmp_path / "nope", "test")
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        load_split(tmp_path, "val")


def test_training_resize_equals_runtime_resize():
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    x = to_model_input(images, 224, model_card("nin").preprocessing)
    assert x.shape == (2, 1, 224, 224) and x.dtype == torch.float32
    for i in range(2):
        runtime = resize_bilinear(images[i].numpy().astype(np.float32), 224, 224) / 255.0
        np.testing.assert_allclose(x[i, 0].numpy(), runtime, atol=1e-5)
    ref = F.interpolate(images[:, None].float() / 255, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.allclose(x, ref)


def test_training_input_follows_the_cards_preprocessing():
    """Training normalises as the card says, with the runtime's own function as the reference."""
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    pre = Preprocessing(scale=1 / 127.5, mean=(1.0,), std=(0.5,))
    x = to_model_input(images, 28, pre)
    for i in range(2):
        runtime = preprocess_image(images[i].numpy(), channels=1, size=28, pre=pre, where="test")
        np.testing.assert_allclose(x[i].numpy(), runtime, atol=1e-5)
    assert float(x.min()) < -1.5  # (0 / 127.5 - 1) / 0.5 = -2: the mean and std were applied
