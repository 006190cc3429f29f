"""Decoding images to model input on worker threads, ahead of the model."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .classifier import Classifier
from .core.errors import InputError
from .core.metadata import Preprocessing
from .inputs import Item
from .preprocess import preprocess_image, read_image


@dataclass(frozen=True)
class Decoder:
    """Turns an :class:`Item` into the model's (C, H, W) float32 tensor, as ``Classifier.prepare`` does.

    Picklable and free of any session, so it runs in worker threads (or processes).
    """

    channels: int
    size: int
    pre: Preprocessing

    @classmethod
    def of(cls, clf: Classifier) -> Decoder:
        return cls(channels=clf.input_shape[0], size=clf.input_shape[1], pre=clf.metadata.preprocessing)

    def __call__(self, item: Item) -> np.ndarray:
        if item.error is not None:
            raise InputError(item.error)
        if item.path is not None or item.data is not None:
            source = item.data if item.data is not None else str(item.path)
            image, where = read_image(source, name=item.name), f"image '{item.name}'"
        else:
            assert item.array is not None  # an Item holds a path, an array or an error
            image, where = np.asarray(item.array), f"image {item.name}"
            if image.dtype == np.float32:
                return self._tensor(image, item.name)
        return preprocess_image(image, channels=self.channels, size=self.size, pre=self.pre, where=where)

    def _tensor(self, x: np.ndarray, name: str) -> np.ndarray:
        want = (self.channels, self.size, self.size)
        if tuple(x.shape) != want:
            raise InputError(f"{name}: float32 tensors must be {want}, got {tuple(x.shape)}")
        if not np.isfinite(x).all():
            raise InputError(f"{name}: the tensor holds NaN or infinite values")
        return np.ascontiguousarray(x)


def default_workers() -> int:
    """Decode threads: one per core, at most 4 (decoding a small PNG is far cheaper than the model)."""
    return max(1, min(4, os.cpu_count() or 1))
