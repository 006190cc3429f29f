"""Fashion-MNIST from its four IDX files, gzipped or not, with every header checked.

No download happens here: the files are read from a folder the user names (or torchvision's
``<root>/FashionMNIST/raw/`` below it). Images stay 28x28 uint8 in memory; resizing to the
model's input happens per batch (:func:`to_model_input`), so 60,000 upscaled copies never exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from nin_edge.runtime.core.errors import ConfigError, ModelFileError

# The IDX reader lives in the runtime, which nin-infer uses too; re-exported here for the data loaders.
from nin_edge.runtime.core.files import IMAGES_MAGIC as IMAGES_MAGIC
from nin_edge.runtime.core.files import LABELS_MAGIC as LABELS_MAGIC
from nin_edge.runtime.core.files import read_idx as read_idx
from nin_edge.runtime.core.metadata import Preprocessing

SPLIT_PREFIX = {"train": "train", "test": "t10k"}
#: What the data is and where it comes from, as model cards name it (never a local path).
DATASET = (
    "Fashion-MNIST by Zalando Research (https://github.com/zalandoresearch/fashion-mnist, MIT licence): "
    "60,000 training and 10,000 test images, 28x28 grayscale, 10 classes"
)


def find_split_files(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """The images and labels files of ``split`` (train/test) under ``root`` or ``root/FashionMNIST/raw``."""
    if split not in SPLIT_PREFIX:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data folder '{root}' does not exist")
    prefix = SPLIT_PREFIX[split]
    for folder in (root, root / "FashionMNIST" / "raw"):
        found = []
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{prefix}-{kind}-ubyte"
            hit = next((folder / n for n in (name, name + ".gz") if (folder / n).is_file()), None)
            found.append(hit)
        images, labels = found
        if images is not None and labels is not None:
            return images, labels
    raise ConfigError(
        f"no Fashion-MNIST {split} files in '{root}': expected {prefix}-images-idx3-ubyte[.gz] and "
        f"{prefix}-labels-idx1-ubyte[.gz] there or in its FashionMNIST/raw/ folder"
    )


@dataclass(frozen=True)
class Split:
    """One split in memory: uint8 images (N, 28, 28) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def load_split(root: str | os.PathLike, split: str, limit: int | None = None) -> Split:
    """Read a split, checking that images and labels agree in count and labels lie in 0..9."""
    images_path, labels_path = find_split_files(root, split)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise ModelFileError(f"IDX file '{images_path}' holds shape {images.shape}, expected (N, rows, cols)")
    if len(images) != len(labels):
        raise ModelFileError(
            f"'{images_path}' has {len(images):,} images but '{labels_path}' has {len(labels):,} labels"
        )
    if labels.size and labels.max() > 9:
        raise ModelFileError(f"labels file '{labels_path}' has label {int(labels.max())}; Fashion-MNIST labels are 0-9")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Split(images=images, labels=labels.astype(np.int64))


def to_model_input(images: torch.Tensor, size: int, pre: Preprocessing) -> torch.Tensor:
    """uint8 (N, H, W) images to float32 (N, 1, size, size), resized bilinearly and normalised as
    the model card's ``pre`` says (``(pixel * scale - mean) / std``; NiN: pixel / 255).

    Bilinear with half-pixel centres and the scale as a float32 factor: the same arithmetic as the
    runtime's numpy preprocessing (``nin_edge.runtime.preprocess``) when enlarging, so training
    and deployment see equal pixels.
    """
    x = images.to(torch.float32).unsqueeze(1) * float(np.float32(pre.scale))
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if any(pre.mean) or any(s != 1.0 for s in pre.std):
        mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x
