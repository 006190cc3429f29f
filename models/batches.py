"""Batches for training and evaluation (images decoded by DataLoader workers, optionally cached), and a
split's per-channel statistics."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from nin_edge.runtime.core.errors import ConfigError, InputError
from nin_edge.runtime.core.files import atomic_output
from nin_edge.runtime.core.metadata import Preprocessing
from nin_edge.runtime.preprocess import preprocess_image
from torch.utils.data import DataLoader, Dataset, Sampler

from .data import to_model_input
from .datasets import Samples, shorten

#: Images used to compute the training set's mean and std (``--normalize data``).
STATS_IMAGES = 512


class _FileDataset(Dataset):
    """Decodes and preprocesses one image per item, in a worker; a bad file gives label -1, not a crash.

    With ``cache`` each model-ready tensor is kept as a ``.npy`` file there, named by a digest of the
    file's path, size and modification time and of the preprocessing, so a changed image or another
    input size is decoded afresh; later epochs read the tensor instead of decoding and resizing. An
    entry that is not such a tensor (truncated, overwritten) is a cache miss: decoded afresh,
    rewritten, and flagged in the item so that the caller can say so.
    """

    def __init__(
        self, samples: Samples, channels: int, size: int, pre: Preprocessing, cache: Path | None = None
    ) -> None:
        self.samples, self.channels, self.size, self.pre, self.cache = samples, channels, size, pre, cache

    def __len__(self) -> int:
        return len(self.samples)

    def _cached(self, i: int) -> Path | None:
        if self.cache is None:
            return None
        path = self.samples.paths[i]
        st = os.stat(path)
        key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{self.channels}|{self.size}|{self.pre}"
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self.cache / digest[:2] / f"{digest}.npy"

    def _load_cached(self, cached: Path) -> np.ndarray | None:
        """The tensor a cache entry holds, or None when it is not the one this dataset would write."""
        try:
            x = np.load(cached, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # numpy's errors for truncated or foreign files
            return None
        return x if x.dtype == np.float32 and x.shape == (self.channels, self.size, self.size) else None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, bool]:
        damaged = False
        try:
            cached = self._cached(i)
            if cached is not None and cached.is_file():
                x = self._load_cached(cached)
                if x is not None:
                    return torch.from_numpy(x), int(self.samples.labels[i]), i, False
                damaged = True
            x = preprocess_image(
                self.samples.raw(i), channels=self.channels, size=self.size, pre=self.pre, where=self.samples.paths[i]
            )
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                with atomic_output(cached) as tmp:  # workers may race; each rename is whole
                    with open(tmp, "wb") as f:
                        np.save(f, x)
            return torch.from_numpy(x), int(self.samples.labels[i]), i, damaged
        except InputError:
            # Refused or skipped by the caller, which knows the file's name from the index.
            return torch.zeros(self.channels, self.size, self.size), -1, i, damaged


class Batches:
    """Model-ready batches ``(x, labels)`` of one split; files that fail to decode are left out and
    listed in :attr:`failed` (or raised at once with ``strict``)."""

    def __init__(
        self,
        samples: Samples,
        *,
        channels: int,
        size: int,
        pre: Preprocessing,
        batch_size: int,
        workers: int = 0,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        sampler: Sampler | Sequence[int] | None = None,
        strict: bool = False,
        cache: str | os.PathLike | None = None,
    ) -> None:
        self.samples, self.channels, self.size, self.pre, self.strict = samples, channels, size, pre, strict
        self.failed: list[str] = []
        #: Images whose --cache-dir entry was damaged and was written afresh.
        self.recached: list[str] = []
        if samples.images is not None:
            dataset: Dataset = torch.utils.data.TensorDataset(
                torch.from_numpy(samples.images), torch.from_numpy(samples.labels)
            )
            workers = 0  # in memory already; batches are resized in one call below
        else:
            dataset = _FileDataset(samples, channels, size, pre, Path(cache) if cache else None)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            generator=generator,
            num_workers=workers,
            persistent_workers=False,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            if self.samples.images is not None:
                images, labels = batch
                x = to_model_input(images, self.size, self.pre)
                if self.channels > 1:
                    x = x.expand(-1, self.channels, -1, -1).contiguous()
                yield x, labels
                continue
            x, labels, index, damaged = batch
            self.recached += [self.samples.paths[int(i)] for i in index[damaged]]
            ok = labels >= 0
            if not bool(ok.all()):
                names = [self.samples.paths[int(i)] for i in index[~ok]]
                if self.strict:
                    raise InputError(f"cannot decode image(s) {shorten(names)} (--strict)")
                self.failed += names
                x, labels = x[ok], labels[ok]
            if len(labels):
                yield x, labels

    def failure_note(self) -> str | None:
        """One line naming the files that failed to decode and those whose damaged cache entry was
        rewritten (each said once), or None."""
        parts = []
        if self.failed:
            parts.append(f"skipped {len(self.failed)} image(s) that failed to decode: {shorten(self.failed)}")
        if self.recached:
            parts.append(
                f"--cache-dir held {len(self.recached)} damaged entr(ies) (truncated or overwritten), decoded "
                f"afresh and rewritten: {shorten(self.recached)}"
            )
            self.recached = []
        return "; ".join(parts) or None


def channel_stats(samples: Samples, channels: int, size: int, pre: Preprocessing, seed: int = 0) -> Preprocessing:
    """``pre`` with the per-channel mean and std of up to :data:`STATS_IMAGES` training images (after
    scaling), so that the model's input is centred (``--normalize data``)."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(samples))[:STATS_IMAGES]
    plain = replace(pre, mean=(0.0,) * channels, std=(1.0,) * channels)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for i in pick:
        try:
            x = preprocess_image(
                samples.raw(int(i)), channels=channels, size=size, pre=plain, where=samples.describe(i)
            )
        except InputError:
            continue
        total += x.sum(axis=(1, 2))
        squares += (x.astype(np.float64) ** 2).sum(axis=(1, 2))
        count += x.shape[1] * x.shape[2]
    if count == 0:
        raise ConfigError("no training image could be read to compute the mean and std")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return replace(pre, mean=tuple(round(float(m), 6) for m in mean), std=tuple(round(float(s), 6) for s in std))
