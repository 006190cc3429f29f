"""The up-front checks on the image files ``--data`` names (:func:`nin_edge.models.datasets.open_data`):
each file's header, read without decoding (a run must not die hours in on one bad file), and the same image
filed under two classes."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nin_edge.runtime.core.files import kind_of
from nin_edge.runtime.preprocess import check_image_size

if TYPE_CHECKING:
    from .datasets import _File


@dataclass(frozen=True)
class Header:
    """What :func:`check_header` found: whether the image can be read, its Pillow mode, or why not."""

    ok: bool
    mode: str = ""
    reason: str = ""


def check_header(path: str) -> Header:
    """Open one image's header (and verify what Pillow can without decoding); never raises."""
    from PIL import Image

    kind = kind_of(path)
    if kind != "a regular file":  # opening a FIFO would wait for a writer for ever
        return Header(False, reason=f"{kind}, not a regular file")
    try:
        with Image.open(path) as im:
            check_image_size(im.size[0], im.size[1], f"image '{path}'")
            mode, fmt = im.mode, im.format
            im.verify()  # PNG: every chunk's CRC; catches truncated and corrupted files cheaply
        if fmt == "JPEG" and not _ends_like_jpeg(path):
            # verify() does not read a JPEG's scan data. Without the end marker, decode at 1/8 scale
            # (cheap, but it reads every byte): a truncated file fails here instead of mid-training.
            with Image.open(path) as im:
                im.draft(im.mode, (1, 1))
                im.load()
        return Header(True, mode)
    except Exception as exc:  # Pillow raises many types; each bad file is reported, not raised
        return Header(False, reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


#: How far from a JPEG's end its end-of-image marker may sit (padding, small trailers).
JPEG_TAIL_BYTES = 4096


def _ends_like_jpeg(path: str) -> bool:
    """Whether the end-of-image marker (FF D9) is in the file's last bytes, as in every whole JPEG."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - JPEG_TAIL_BYTES))
        return b"\xff\xd9" in f.read()


def duplicates(files: list[_File]) -> list[tuple[_File, _File]]:
    """Pairs of entries in different classes that are the same file (link) or the same bytes."""
    by_key: dict[object, _File] = {}
    pairs = []
    by_size: dict[int, list[_File]] = defaultdict(list)
    for f in files:
        st = os.stat(f.path)
        key = (st.st_dev, st.st_ino)
        if key in by_key and by_key[key].label != f.label:
            pairs.append((by_key[key], f))
            continue
        by_key.setdefault(key, f)
        by_size[st.st_size].append(f)
    for group in by_size.values():
        if len({f.label for f in group}) < 2:
            continue  # hashing only where two classes have a file of one size
        by_digest: dict[str, _File] = {}
        for f in group:
            digest = hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
            first = by_digest.setdefault(digest, f)
            if first.label != f.label:
                pairs.append((first, f))
    return pairs
