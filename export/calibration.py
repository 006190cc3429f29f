"""The images an INT8 export calibrates on and a reduced precision is compared on: Fashion-MNIST IDX,
labelled data (class folders, manifests), ``.npy`` arrays, image files or synthetic noise."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nin_edge.models.data import load_split
from nin_edge.models.datasets import MANIFEST_SUFFIXES, open_data
from nin_edge.runtime.core.errors import ConfigError, InputError
from nin_edge.runtime.core.files import kind_of, load_npy
from nin_edge.runtime.core.metadata import Preprocessing
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.preprocess import IMAGE_SUFFIXES, preprocess_image, read_image


@dataclass(frozen=True)
class CalibrationSet:
    """Model-ready calibration (or evaluation) images, their labels if known, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    #: The same without the exporting machine's paths, for model cards.
    card_note: str = ""


def load_images(
    source: str,
    *,
    size: int,
    channels: int,
    limit: int,
    split: str = "train",
    seed: int = 0,
    pre: Preprocessing | None = None,
    skip: int = 0,
    split_record: Mapping[str, Any] | None = None,
    classes: Sequence[str] | None = None,
) -> CalibrationSet:
    """Images for calibration or evaluation, preprocessed exactly as the runtime does.

    ``source`` is ``synthetic`` (uniform noise, flagged as such), a folder with Fashion-MNIST IDX
    files (``split`` of it), a folder of image files, or a ``.npy`` file / folder of ``.npy`` batches
    (uint8: one (H,W) image or an (N,H,W[,C]) stack; or model-ready float32 (N,C,H,W) tensors,
    which must lie in the range the preprocessing produces). ``skip`` leaves out the first images,
    so an evaluation can use images the calibration did not see. ``split_record`` is the split a
    nin-train checkpoint recorded (``val_fraction``, ``seed``): a folder without val/ or test/ is split
    the same way, so a model is judged on the images its training held out. ``classes`` (a trained
    model's labels) must be labelled data's class names: labels are class indices, so other names, or
    the same in another order, would score against the wrong classes.
    """
    pre = pre or Preprocessing()
    if not is_whole_number(limit, minimum=1):
        raise ConfigError(f"calibration size must be a positive whole number, got {limit!r}")
    if source == "synthetic":
        rng = np.random.default_rng(seed)
        images = rng.random((limit, channels, size, size), dtype=np.float32)
        return CalibrationSet(images, None, f"synthetic: {limit} uniform-noise images, seed {seed}")
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"calibration data '{source}' does not exist; give a folder of IDX files, images or .npy, or 'synthetic'"
        )

    def prep(raw: list[np.ndarray]) -> np.ndarray:
        return np.stack(
            [preprocess_image(im, channels=channels, size=size, pre=pre, where=f"'{source}'") for im in raw]
        )

    if path.is_dir() and any(path.glob("*-idx3-ubyte*")) or (path / "FashionMNIST" / "raw").is_dir():
        data = load_split(path, split)
        images, labels = data.images[skip : skip + limit], data.labels[skip : skip + limit]
        _enough(images, skip, source)
        first = f"images {skip + 1}-{skip + len(images)}" if skip else f"first {len(images)} images"
        idx_files = "train" if split == "train" else "t10k"
        return CalibrationSet(
            prep(list(images)),
            labels,
            f"Fashion-MNIST {split} split of '{source}', {first}" + _held_out(skip),
            f"{first if skip else 'the ' + first} of the Fashion-MNIST {split} split ({idx_files} files)"
            + _held_out(skip),
        )
    if path.suffix.lower() in MANIFEST_SUFFIXES or path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return _labelled(
            path, split=split, limit=limit, skip=skip, prep=prep, split_record=split_record or {}, classes=classes
        )
    npys = [path] if path.suffix == ".npy" else sorted(path.glob("*.npy")) if path.is_dir() else []
    if npys:
        low, high = _preprocessed_range(pre)
        batches = []
        for f in npys:
            arr = load_npy(f, "calibration array")
            if arr.dtype == np.float32:
                if arr.ndim != 4 or arr.shape[1:] != (channels, size, size):
                    raise InputError(
                        f"calibration array '{f}': expected float32 (N,{channels},{size},{size}), got "
                        f"{tuple(arr.shape)}"
                    )
                _check_range(arr, low, high, f)
                batches.append(arr)
            elif arr.dtype == np.uint8:
                # A uint8 .npy is one (H,W) image or a stack: (N,H,W) or (N,H,W,C).
                batches.append(prep([arr] if arr.ndim == 2 else list(arr)))
            else:
                raise InputError(f"calibration array '{f}': expected uint8 images or float32 tensors, got {arr.dtype}")
        images = np.concatenate(batches)[skip : skip + limit]
        _enough(images, skip, source)
        note = f"{len(images)} images from .npy files" + _held_out(skip)
        return CalibrationSet(images, None, f"{len(images)} images from .npy in '{source}'" + _held_out(skip), note)
    named = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []
    # A FIFO named like an image would block the read for ever; it and other special files are skipped.
    files = [p for p in named if kind_of(p) == "a regular file"]
    skipped = (
        f" ({len(named) - len(files)} entries that are not regular files skipped)" if len(files) < len(named) else ""
    )
    if not files:
        raise ConfigError(f"calibration data '{source}' holds no IDX files, images or .npy arrays{skipped}")
    chosen = files[skip : skip + limit]
    _enough(chosen, skip, source)
    images = prep([read_image(f) for f in chosen])
    note = f"{len(images)} unlabelled image files" + _held_out(skip)
    return CalibrationSet(images, None, f"{len(images)} image files from '{source}'" + _held_out(skip) + skipped, note)


def _labelled(
    path: Path,
    *,
    split: str,
    limit: int,
    skip: int,
    prep: Callable[[list[np.ndarray]], np.ndarray],
    split_record: Mapping[str, Any],
    classes: Sequence[str] | None,
) -> CalibrationSet:
    """Images of a training ``--data`` (class folders or manifest) through the one loader: the train
    split to calibrate, the test split (else the validation split) to judge; a sample across all
    classes in one fixed shuffled order (so ``skip`` leaves out exactly the images calibrated on)."""
    data = open_data(path, val_fraction=split_record.get("val_fraction", 0.1), seed=split_record.get("seed", 0))
    if classes is not None:
        data.check_classes(classes, "the model")
    name = "train" if split == "train" else data.eval_split
    samples = data.split(name)
    pick = np.random.default_rng(0).permutation(len(samples))[skip : skip + limit]
    _enough(pick, skip, str(path))
    images = prep([samples.raw(int(i)) for i in pick])
    what = "class folders" if data.kind == "folder" else data.kind
    # What the loader skipped (unreadable files, FIFOs and other non-files) is said where the images are named.
    skipped = f" ({'; '.join(data.notes)})" if data.notes else ""
    return CalibrationSet(
        images,
        samples.labels[pick],
        f"{len(pick)} images sampled across classes from the {name} split of '{path}'" + _held_out(skip) + skipped,
        f"{len(pick)} images sampled across classes from the {name} split of the evaluation data ({what})"
        + _held_out(skip),
    )


def _held_out(skip: int) -> str:
    return f", held out (after the first {skip}, which calibrated)" if skip else ""


def _enough(images: Sequence | np.ndarray, skip: int, source: str) -> None:
    if len(images) == 0:
        raise ConfigError(
            f"'{source}' has no images after the first {skip} used for calibration; give --eval-data, "
            "or more images, so that agreement is measured on images the calibration did not see"
        )


def _preprocessed_range(pre: Preprocessing) -> tuple[float, float]:
    """The smallest and largest value the preprocessing makes of 8-bit pixels (all channels)."""
    ends = [(p * pre.scale - m) / s for p in (0, 255) for m, s in zip(pre.mean, pre.std, strict=True)]
    return min(ends), max(ends)


def _check_range(arr: np.ndarray, low: float, high: float, where: Path) -> None:
    """Refuse float tensors far outside what the preprocessing produces (e.g. pixels left in 0-255)."""
    slack = 0.1 * (high - low)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < low - slack or hi > high + slack:
        raise InputError(
            f"calibration array '{where}' holds values from {lo:.4g} to {hi:.4g}, but the model's preprocessing "
            f"produces {low:.4g} to {high:.4g}; pass uint8 images, or float32 tensors preprocessed as the model's "
            "metadata says"
        )
