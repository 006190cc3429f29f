r"""What ``nin-infer`` classifies: files, folders, glob patterns, list files, and arrays (``.npy``, IDX
stacks), listed as :class:`Item` objects."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .core.errors import InputError, NinEdgeError
from .core.files import IMAGES_MAGIC, load_npy, read_idx

#: What a folder walk picks up (any of these, in any letter case); other files in a folder are skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


@dataclass(frozen=True)
class Item:
    """One image to classify: a file or encoded bytes to decode, or an array (a slice of a stack)."""

    name: str
    path: str | None = None
    array: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None
    data: bytes | None = field(default=None, repr=False)


def _is_idx(path: str) -> bool:
    name = path.lower().removesuffix(".gz")
    return name.endswith("-ubyte") or name.endswith(".idx")


def _stack_items(path: str) -> Iterator[Item]:
    """The images of a ``.npy`` stack or IDX file, each named ``path[i]``; one error item if unreadable.

    uint8 ``(H,W)`` and ``(H,W,C)`` are one image, ``(N,H,W)`` and ``(N,H,W,C)`` a stack, with C
    (a last axis shorter than 5) 1, 3 or 4. float32 ``(C,H,W)`` / ``(N,C,H,W)`` are tensors already
    preprocessed for the model (the decoder checks them against its input shape). Any other shape
    is one error item naming it.
    """
    try:
        if _is_idx(path):
            array = read_idx(path, IMAGES_MAGIC)
        else:
            array = load_npy(path)
    except NinEdgeError as exc:
        yield Item(path, error=str(exc))
        return
    shape = tuple(array.shape)
    expected = (
        "expected uint8 images (H,W), (H,W,C), (N,H,W) or (N,H,W,C) with C 1, 3 or 4, or float32 tensors "
        "(C,H,W) or (N,C,H,W) prepared for the model"
    )
    if array.dtype not in (np.uint8, np.float32):
        yield Item(path, error=f"array file '{path}' holds {array.dtype} {shape}; {expected}")
        return
    if array.dtype == np.float32:
        single, stack = array.ndim == 3, array.ndim == 4
    else:
        channels_last = array.ndim >= 3 and shape[-1] < 5
        single = array.ndim == 2 or (array.ndim == 3 and channels_last)
        stack = (array.ndim == 3 and not channels_last) or (array.ndim == 4 and channels_last)
        if channels_last and shape[-1] not in (1, 3, 4):  # (H,W,2), (N,H,W,2): no image has 2 channels
            single = stack = False
    if not (single or stack):
        yield Item(
            path, error=f"array file '{path}' has shape {shape}, neither an image nor a stack of images; {expected}"
        )
    elif single:
        yield Item(path, array=array)
    else:
        for i in range(len(array)):
            yield Item(f"{path}[{i}]", array=array[i])


def _walk(folder: str, seen: set[tuple[int, int]]) -> Iterator[Item]:
    """Image files under ``folder``, recursively, in name order at every level (``find | sort`` order).

    One folder's names are held (sorted) at a time per level: about 70 MB for a million files in
    one folder, nothing that grows with the files of other folders. Names with an image extension
    are taken for files without a ``stat`` each; the others are checked for being folders. Links
    are followed, but each real folder is walked once (``seen`` holds those walked): a link to a
    folder above it (``ln -s . self``) would otherwise make the walk endless.
    """
    try:
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        names = sorted(os.listdir(folder))
    except OSError as exc:  # an unreadable folder is an error row; the rest of the tree goes on
        yield Item(folder, error=f"cannot list folder '{folder}': {exc.strerror or exc}")
        return
    for name in names:
        path = os.path.join(folder, name)
        if name.lower().endswith(IMAGE_EXTENSIONS):
            yield Item(path, path=path)
        elif os.path.isdir(path):
            yield from _walk(path, seen)


def _one(path: str) -> Iterator[Item]:
    if path.lower().endswith(".npy") or _is_idx(path):
        yield from _stack_items(path)
    else:
        yield Item(path, path=path)


def check_inputs(inputs: Iterable[str]) -> None:
    """Refuse, before any work, a command-line input that is neither a file, a folder nor a matching pattern."""
    for arg in inputs:
        if os.path.exists(arg):
            continue
        if glob.has_magic(arg):
            if next(glob.iglob(arg, recursive=True), None) is None:
                raise InputError(f"input pattern '{arg}' matches no file")
            continue
        raise InputError(f"input '{arg}' does not exist; expected an image file, a folder, a glob pattern or .npy")


def listed_paths(from_list: str) -> Iterator[str]:
    """Paths from a list file (or stdin for ``-``): one per line; blank lines and ``#`` comments skipped.

    The list must be UTF-8 text: a line that is not is an error naming it (a binary file or a list
    saved in another encoding would otherwise become rows of garbled paths).
    """
    stream = sys.stdin.buffer if from_list == "-" else open(from_list, "rb")
    where = "standard input" if from_list == "-" else f"list file '{from_list}'"
    try:
        for n, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(
                    f"line {n} of {where} is not UTF-8 text; save the list as UTF-8 (one path per line)"
                ) from None
            path = line.rstrip("\r\n")
            if path.strip() and not path.lstrip().startswith("#"):
                yield path
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def expand_inputs(inputs: Iterable[str], from_list: str | None = None) -> Iterator[Item]:
    """Every image the inputs name, lazily and in a stable order.

    A folder is walked for :data:`IMAGE_EXTENSIONS`; a pattern's matches are sorted (so a pattern
    holds its match list in memory: for millions of files name the folder instead); listed paths
    are taken as they are (a missing one becomes an error row). Each real folder is walked once.
    """
    seen: set[tuple[int, int]] = set()
    for arg in inputs:
        if os.path.isdir(arg):
            yield from _walk(arg, seen)
        elif os.path.exists(arg):
            yield from _one(arg)
        else:
            for match in sorted(glob.iglob(arg, recursive=True)):
                if os.path.isdir(match):
                    yield from _walk(match, seen)
                else:
                    yield from _one(match)
    if from_list is not None:
        for path in listed_paths(from_list):
            if os.path.isdir(path):
                yield from _walk(path, seen)
            else:
                yield from _one(path)
