"""From raw images (as Pillow and OpenCV hold them) to the model's float32 tensor, in numpy.

The resize is PIL's BILINEAR filter written as two small matrix products: a triangle kernel
over half-pixel centres, widened when shrinking so that it averages (antialiasing) as PIL does.
When enlarging, as for 28x28 Fashion-MNIST to 224x224, it equals ``torch.nn.functional.interpolate``
with ``mode="bilinear", align_corners=False``, so training and the runtime see the same pixels.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TypeGuard

import numpy as np

from .core.errors import InputError
from .core.metadata import Preprocessing

# Larger images are refused before decoding (decompression bombs); 64 MP is a big photo.
MAX_IMAGE_PIXELS = 64_000_000
# The resize builds a (size x side) weight matrix per axis, so a 2,000,000 x 1 image would need
# gigabytes although it has few pixels; sides this far apart are refused instead.
MAX_ASPECT_RATIO = 64

#: File suffixes read as images wherever a folder of images is taken (calibration, training data).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# ITU-R 601-2 luma, the weights of PIL's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@lru_cache(maxsize=64)
def _resize_matrix(src: int, dst: int) -> np.ndarray:
    """The (dst, src) weight matrix of PIL-style bilinear resampling along one axis."""
    scale = src / dst
    support = max(scale, 1.0)
    centres = (np.arange(dst) + 0.5) * scale
    pixels = np.arange(src) + 0.5
    weights = np.clip(1.0 - np.abs(pixels[None, :] - centres[:, None]) / support, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float array to (height, width[, C])."""
    rows = _resize_matrix(image.shape[0], height)
    cols = _resize_matrix(image.shape[1], width)
    if image.ndim == 2:
        return rows @ image @ cols.T
    return np.einsum("ij,jkc,lk->ilc", rows, image, cols, optimize=True)


def _to_channels(image: np.ndarray, channels: int, color: str, where: str) -> np.ndarray:
    """Bring an (H, W) or (H, W, C) uint8 image to (H, W, channels) float32 in pixel units."""
    img = image.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:  # drop alpha, as PIL's convert does
        img = img[:, :, :3]
    if channels == 1 or color == "grayscale":
        if img.shape[2] == 3:
            img = img @ _LUMA
            img = img[:, :, None]
        if channels > 1:
            img = np.repeat(img, channels, axis=2)
        return img
    if img.shape[2] == 1:
        return np.repeat(img, channels, axis=2)
    if img.shape[2] != channels:
        raise InputError(f"{where}: image has {img.shape[2]} channels, the model takes {channels}")
    return img


def check_image_array(image: np.ndarray, where: str) -> None:
    """Validate one raw image: uint8, (H, W) or (H, W, C) with C in 1, 3, 4, not empty."""
    if image.dtype != np.uint8:
        raise InputError(f"{where}: raw images must be uint8, got {image.dtype} {tuple(image.shape)}")
    ok_rank = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
    if not ok_rank:
        raise InputError(
            f"{where}: expected one image as (H,W) or (H,W,C) with C in 1, 3 or 4, got uint8 {tuple(image.shape)}; "
            "for several images pass a list, or a uint8 (N,H,W,C) array"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{where}: image is empty, shape {tuple(image.shape)}")
    check_image_size(image.shape[1], image.shape[0], where)


def check_image_size(width: int, height: int, where: str, max_pixels: int | None = None) -> None:
    """Refuse images over the pixel limit or with sides more than :data:`MAX_ASPECT_RATIO` apart."""
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if width * height > max_pixels:
        raise InputError(f"{where}: image of {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(
            f"{where}: image of {width}x{height} pixels has sides more than {MAX_ASPECT_RATIO}:1 apart; "
            "refused (resizing it would take far more memory than its pixels); crop it first"
        )


def preprocess_image(image: np.ndarray, *, channels: int, size: int, pre: Preprocessing, where: str) -> np.ndarray:
    """One raw uint8 image to a (channels, size, size) float32 tensor, as the metadata says."""
    check_image_array(image, where)
    img = _to_channels(image, channels, pre.color, where)
    if img.shape[:2] != (size, size):
        img = resize_bilinear(img, size, size)
    img = img * np.float32(pre.scale)
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    img = (img - mean) / std
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def read_image(path: str | os.PathLike | bytes, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """Read a PNG/JPEG (any format Pillow reads) as uint8 (H, W) or (H, W, 3), refusing huge images.

    ``path`` is a file or the encoded bytes of one; ``name``, when given, is what messages call it.
    The size is checked from the header, before the pixels are decoded, against ``max_pixels``
    (default :data:`MAX_IMAGE_PIXELS`).
    """
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        from PIL import Image, ImageOps
    except ImportError:
        where = name or ("<bytes>" if isinstance(path, bytes) else str(path))
        raise InputError(f"reading image '{where}' needs Pillow: pip install pillow (or pass arrays)") from None
    if isinstance(path, bytes):
        source: Path | io.BytesIO = io.BytesIO(path)
        where = name or "<bytes>"
    else:
        source = Path(path)
        where = name or str(source)
        if not source.is_file():
            raise InputError(f"image file '{where}' does not exist")
    try:
        with Image.open(source) as im:
            w, h = im.size
            check_image_size(w, h, f"image '{where}'", max_pixels)  # from the header, before decoding
            return _to_uint8(ImageOps.exif_transpose(im))
    except InputError:
        raise
    except Exception as exc:  # Pillow raises many types (UnidentifiedImageError, OSError, SyntaxError...)
        reason = str(exc).splitlines()[0].replace(str(source), where) if str(exc) else type(exc).__name__
        raise InputError(f"cannot read image '{where}': {reason}") from None


def _to_uint8(im) -> np.ndarray:  # a PIL image, imported lazily
    """8-bit grayscale or RGB pixels. 16-bit images are scaled (/257), not clipped as PIL's convert
    does; float images (mode F, e.g. a float32 TIFF) hold 0..1 by convention and are scaled (x255)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(im, dtype=np.float64)
        if wide.size and (wide.min() < 0 or wide.max() > 65535):
            raise InputError(f"image mode {im.mode} holds values outside 0..65535; save it as 8 or 16 bits")
        return np.round(wide / 257.0).astype(np.uint8)
    if im.mode == "F":
        real = np.asarray(im, dtype=np.float64)
        if not np.isfinite(real).all():
            raise InputError("float image (mode F) holds NaN or infinite values")
        if real.size and (real.min() < 0 or real.max() > 1):
            raise InputError(
                f"float image (mode F) holds values from {real.min():.4g} to {real.max():.4g}; float images are read "
                "as 0..1: scale it to 0..1, or save it as 8 or 16 bits"
            )
        return np.round(real * 255.0).astype(np.uint8)
    if im.mode == "P":  # a palette may hold colours: expand it (grey palettes give equal channels)
        im = im.convert("RGB")
    converted = im.convert("L") if im.mode in ("1", "L") else im.convert("RGB")
    return np.asarray(converted, dtype=np.uint8).copy()


def is_path_like(item: object) -> TypeGuard[str | os.PathLike]:
    return isinstance(item, (str, os.PathLike))


def gather_raw_images(items: Sequence[object]) -> list[tuple[str, np.ndarray]]:
    """Read paths and pass arrays through, each with a name for error messages."""
    out = []
    for i, item in enumerate(items):
        if is_path_like(item):
            out.append((f"image '{item}'", read_image(item)))
        elif isinstance(item, np.ndarray):
            out.append((f"image {i}", item))
        else:
            raise InputError(f"item {i} is a {type(item).__name__}; expected a uint8 array or an image file path")
    return out
