"""One loader for every command that reads labelled images (``--data PATH``).

``PATH`` is one of:

1. a folder with one subfolder per class (torchvision's ImageFolder layout), optionally under
   ``train/``, ``val/`` and ``test/``; without ``val/`` a stratified, seeded split of the training
   images is held out (``val_fraction``), and how it was made is recorded (:attr:`LabelledData.split_record`)
   so that a resumed or evaluated run holds out the same images;
2. a CSV or JSONL manifest with ``path`` and ``label`` (and optionally ``split``) per image, paths
   relative to the manifest;
3. the Fashion-MNIST IDX folder (:mod:`nin_edge.models.data`).

Class names come from the folders or the manifest in a stable order (sorted; numerically when
every label is a whole number). Files are checked up front, from their headers (cheap): a run
must not die hours in on one bad file. Images are decoded later, one at a time, by DataLoader
worker processes with the runtime's own reader and preprocessing, so training sees what the
deployed model will see and a million files never sit decoded in memory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from nin_edge.runtime.core.errors import ConfigError, InputError
from nin_edge.runtime.core.files import kind_of
from nin_edge.runtime.core.metadata import check_labels
from nin_edge.runtime.preprocess import IMAGE_SUFFIXES, read_image

from .cards import FASHION_MNIST_CLASSES
from .data import find_split_files, load_split
from .image_checks import check_header, duplicates

SPLITS = ("train", "val", "test")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
#: How many file names an error or a note lists before "and N more".
SHOWN = 5
#: Image modes that hold no colour (PIL's names); every other mode counts as colour.
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

Progress = Callable[[int, int], None]


def shorten(names: Sequence[str]) -> str:
    """The first :data:`SHOWN` of ``names``, comma-separated, with how many more there are."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(printable(n) for n in names[:SHOWN]) + more


def printable(name: str) -> str:
    """A file name as it can be printed: bytes that are not UTF-8 (which Python keeps as lone
    surrogates) shown as ``\\xNN`` rather than failing the terminal's encoder."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _key(text: str) -> bytes:
    """``text`` (a path, perhaps with bytes that are not UTF-8) as bytes to hash."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Samples:
    """One split: image files (``paths``) or in-memory IDX images (``images``), and class indices."""

    name: str
    labels: np.ndarray
    paths: tuple[str, ...] = ()
    images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, limit: int | None) -> Samples:
        """The first ``limit`` samples (all when None)."""
        if limit is None:
            return self
        images = None if self.images is None else self.images[:limit]
        return replace(self, labels=self.labels[:limit], paths=self.paths[:limit], images=images)

    def raw(self, i: int) -> np.ndarray:
        """Sample ``i`` as raw uint8 pixels, (H, W) or (H, W, 3), read as the runtime reads files."""
        if self.images is not None:
            return self.images[i]
        return read_image(self.paths[i])

    def describe(self, i: int) -> str:
        return self.paths[i] if self.images is None else f"{self.name} image {i}"


@dataclass(frozen=True)
class LabelledData:
    """Labelled images from one ``--data`` path: class names, channels, splits and how they were made."""

    source: str
    kind: str
    classes: tuple[str, ...]
    channels: int
    splits: dict[str, Samples]
    split_record: dict
    notes: tuple[str, ...] = field(default=())

    @property
    def held_out(self) -> str:
        """The split a training run scores each epoch: ``val`` where there is one, else ``test``."""
        return "val" if "val" in self.splits else "test"

    @property
    def eval_split(self) -> str:
        """The split ``nin-eval`` scores by default: ``test`` where there is one, else ``val``."""
        return "test" if "test" in self.splits else "val"

    def split(self, name: str) -> Samples:
        """The split ``name``; a clear error if this data has none."""
        if name not in self.splits:
            if name in ("val", "test") and "val_fraction" in self.split_record and "val" not in self.splits:
                # Nothing was held out: every class has a single image (see _stratified_val).
                raise ConfigError(
                    f"'{self.source}' has no images to hold out for validation: each of its {len(self.classes)} "
                    "classes has a single training image, and a class needs at least 2 (one to train on, one "
                    "to score on); add images, or give train/ and val/ folders"
                )
            raise ConfigError(
                f"'{self.source}' has no {name} split; it has {', '.join(self.splits)} (choose one of those)"
            )
        return self.splits[name]

    def check_classes(self, classes: Sequence[str], what: str) -> None:
        """Refuse a model (``what``) trained on other classes than this data's, naming the first difference."""
        if tuple(classes) == self.classes:
            return
        if self.kind == "idx" and len(classes) == len(self.classes):
            return  # IDX files hold class indices only; the model's names are the ones to show
        missing = [c for c in self.classes if c not in classes]
        extra = [c for c in classes if c not in self.classes]
        if missing or extra:
            detail = (f"the data has {shorten(missing)} that it lacks" if missing else "") + (
                ("; " if missing else "") + f"it has {shorten(extra)} that the data lacks" if extra else ""
            )
        else:
            detail = "same names in another order (class indices would be mixed up)"
        lists = f"its classes: {shorten(list(classes))}; the data's: {shorten(list(self.classes))}"
        raise ConfigError(
            f"{what} was trained on {len(classes)} classes, '{self.source}' has {len(self.classes)}: {detail} "
            f"({lists}); use the data it was trained on, or train a model on this data"
        )


@dataclass(frozen=True)
class _File:
    path: str
    label: str
    split: str


def _natural_order(labels: set[str]) -> tuple[str, ...]:
    """Sorted class names; numerically when every one is a whole number (so 10 follows 9)."""
    # isdecimal, not isdigit: '²' is a digit that int() refuses.
    if labels and all(s.isdecimal() for s in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def detect_kind(path: Path) -> str:
    """``idx``, ``folder`` or ``manifest`` for a ``--data`` path; a clear error for anything else."""
    if path.is_file():
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            return "manifest"
        raise ConfigError(
            f"--data '{path}' is a file but not a manifest; expected a .csv or .jsonl manifest (path,label), "
            "a folder with one subfolder per class, or a Fashion-MNIST IDX folder"
        )
    if not path.is_dir():
        raise ConfigError(f"data folder '{path}' does not exist")
    if any(path.glob("*-idx3-ubyte*")) or (path / "FashionMNIST" / "raw").is_dir():
        return "idx"
    return "folder"


def _walk_class(folder: Path, seen_dirs: set[tuple[int, int]]) -> tuple[list[str], list[str]]:
    """Every file under a class folder (following links, refusing loops): images by name, and others."""
    images: list[str] = []
    others: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            raise ConfigError(
                f"folder '{root}' is reached twice (a symbolic link loop, or two links to one folder); "
                "remove the link so that each image is read once"
            )
        seen_dirs.add(key)
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            (images if Path(name).suffix.lower() in IMAGE_SUFFIXES else others).append(full)
    return images, others


def _folders(folder: Path) -> list[str]:
    """Subfolder names, sorted, leaving out hidden ones (``.ipynb_checkpoints``, ``.git``): never classes."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_folder(root: Path) -> tuple[list[_File], list[str]]:
    subdirs = _folders(root)
    layout = [s for s in subdirs if s in SPLITS]
    if "train" in layout and set(subdirs) <= set(SPLITS):
        split_roots = {s: root / s for s in layout}
    elif layout and set(subdirs) <= set(SPLITS):
        raise ConfigError(
            f"'{root}' has {', '.join(s + '/' for s in layout)} but no train/; add train/ with one subfolder "
            "per class, or put the class folders directly in it"
        )
    else:
        split_roots = {"train": root}
    files: list[_File] = []
    # Files beside the class folders belong to no class; they are named, not guessed at.
    ignored: list[str] = [str(p) for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
    seen_dirs: set[tuple[int, int]] = set()
    for split, folder in split_roots.items():
        classes = _folders(folder)
        if not classes:
            raise ConfigError(
                f"'{folder}' has no class subfolders; put each class's images in a subfolder named after the class"
            )
        if folder != root:
            ignored += [str(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
        _check_class_names(classes, folder)
        for name in classes:
            images, others = _walk_class(folder / name, seen_dirs)
            ignored += others
            if not images:
                raise ConfigError(
                    f"class folder '{folder / name}' holds no images (looked for {', '.join(IMAGE_SUFFIXES)}); "
                    "add images or remove the folder"
                )
            files += [_File(p, name, split) for p in images]
    return files, ignored


def _check_class_names(names: Sequence[str], where: Path) -> None:
    """Refuse class names that cannot be labels (a newline splits labels.txt; see check_labels)."""
    try:
        check_labels(list(names), f"the classes of '{printable(str(where))}'")
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _read_manifest(path: Path) -> list[_File]:
    base = path.parent
    rows: list[dict] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read manifest '{path}': {exc}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ConfigError(
                f"manifest '{path}' needs a header line with the columns path,label (and optionally split); "
                f"its first line is {text.splitlines()[0][:80]!r}"
                if text.strip()
                else f"manifest '{path}' is empty"
            )
        rows = [dict(r) for r in reader]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"manifest '{path}' line {n} is not JSON: {exc.msg}") from None
            if not isinstance(row, dict) or "path" not in row or "label" not in row:
                raise ConfigError(f"manifest '{path}' line {n}: expected an object with path and label, got {line!r}")
            rows.append(row)
    files = []
    for n, row in enumerate(rows, 1):
        label, rel, split = _cell(row.get("label")), _cell(row.get("path")), row.get("split")
        split = str(split).strip() if split not in (None, "") else "train"
        if label is None or rel is None:
            raise ConfigError(
                f"manifest '{path}' entry {n}: path and label must be text (a label may be a whole number), got "
                f"path {row.get('path')!r} and label {row.get('label')!r}"
            )
        if not rel or not label:
            raise ConfigError(f"manifest '{path}' entry {n} has an empty path or label: {row}")
        if split not in SPLITS:
            raise ConfigError(f"manifest '{path}' entry {n} has split {split!r}; expected one of {', '.join(SPLITS)}")
        files.append(_File(str(base / rel), label, split))
    if not files:
        raise ConfigError(f"manifest '{path}' lists no images")
    missing = [f.path for f in files if kind_of(f.path) == "missing"]
    if missing:
        raise ConfigError(
            f"manifest '{path}' names {len(missing)} file(s) that do not exist (paths are relative to the "
            f"manifest's folder): {shorten(missing)}"
        )
    _check_class_names(sorted({f.label for f in files}), path)
    return files


def _cell(value: object) -> str | None:
    """A manifest's path or label as text: a JSON string or whole number (0 is a label; false is
    not), None for anything else. CSV cells are strings already."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None if value is not None else ""
    return str(value).strip()


def _stratified_val(files: list[_File], fraction: float, seed: int, root: Path) -> set[str]:
    """Paths held out for validation: per class, the ``fraction`` of files ranked first by a seeded hash.

    A hash of (seed, path below ``root``) rather than a shuffled list, so adding images to a class
    moves few others, and moving the data folder moves none. At least one image per class is held
    out and at least one kept for training.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_class[f.label].append(f.path)
    held: set[str] = set()
    for paths in by_class.values():
        if len(paths) < 2:
            continue
        ranked = sorted(paths, key=lambda p: hashlib.sha1(_key(f"{seed}:{os.path.relpath(p, root)}")).hexdigest())
        n = min(len(paths) - 1, max(1, round(fraction * len(paths))))
        held.update(ranked[:n])
    return held


def _digest(paths: Sequence[str], root: Path) -> str:
    rel = sorted(os.path.relpath(p, root) for p in paths)
    return hashlib.sha256(_key("\n".join(rel))).hexdigest()


def open_data(
    path: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    channels: int | None = None,
    strict: bool = False,
    classes: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> LabelledData:
    """Open ``--data PATH``, check every file's header, and split it; see the module docstring.

    ``classes`` fixes the class list (a checkpoint's, at evaluation); labels outside it are refused.
    Unreadable files are left out with a note naming the first few, or refused with ``strict``.
    ``progress(done, total)`` is called while headers are checked.
    """
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ConfigError(f"val fraction must be between 0 and 1 (e.g. 0.1), got {val_fraction!r}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    root = Path(path)
    kind = detect_kind(root)
    if kind == "idx":
        return _open_idx(root, channels or 1, classes)
    notes: list[str] = []
    if kind == "manifest":
        files = _read_manifest(root)
        base = root.parent
    else:
        files, ignored = _scan_folder(root)
        base = root
        if ignored:
            notes.append(
                f"ignored {len(ignored)} file(s) outside class folders or without an image suffix: {shorten(ignored)}"
            )
    train_labels = {f.label for f in files if f.split == "train"}
    class_list = tuple(classes) if classes is not None else _natural_order(train_labels)
    for split in ("val", "test"):
        only = sorted({f.label for f in files if f.split == split} - set(class_list))
        if only:
            where = "the model's classes" if classes is not None else "train"
            raise ConfigError(
                f"class(es) {shorten(only)} appear in {split} but not in {where} of '{root}'; a model cannot "
                "learn a class it never trains on: add training images or remove them"
            )
    if classes is not None:
        unknown = sorted(train_labels - set(class_list))
        if unknown:
            raise ConfigError(f"'{root}' has label(s) {shorten(unknown)} absent from the class list ({len(classes)})")
    elif len(class_list) < 2:
        raise ConfigError(f"'{root}' has a single class ({shorten(list(class_list))}); a classifier needs at least two")

    modes: Counter[str] = Counter()
    bad: list[str] = []
    good: list[_File] = []
    for i, f in enumerate(files):
        header = check_header(f.path)
        if header.ok:
            modes[header.mode] += 1
            good.append(f)
        else:
            bad.append(f"{f.path} ({header.reason})")
        if progress is not None and (i + 1 == len(files) or (i + 1) % 256 == 0):
            progress(i + 1, len(files))
    if bad:
        if strict:
            raise InputError(f"{len(bad)} of {len(files)} image(s) in '{root}' cannot be read: {shorten(bad)}")
        notes.append(f"skipped {len(bad)} unreadable image(s) (--strict refuses them): {shorten(bad)}")
    dupes = duplicates(good)
    if dupes:
        shown = [f"{a.path} ({a.label}) = {b.path} ({b.label})" for a, b in dupes]
        if strict:
            raise InputError(f"{len(dupes)} image(s) are in two classes of '{root}': {shorten(shown)}")
        drop = {f.path for pair in dupes for f in pair}
        good = [f for f in good if f.path not in drop]
        notes.append(f"left out {len(dupes)} image(s) found in two classes (--strict refuses them): {shorten(shown)}")
    counts = Counter(f.label for f in good if f.split == "train")
    empty = [c for c in class_list if counts[c] == 0 and classes is None]
    if empty:
        raise ConfigError(f"class(es) {shorten(empty)} of '{root}' have no readable training images")
    if len(modes) > 1 or set(modes) - {"L", "RGB"}:
        notes.append(
            "image modes " + ", ".join(f"{m} {n}" for m, n in sorted(modes.items())) + " read as 8-bit grey or RGB"
        )
    colour = any(m not in GREY_MODES for m in modes)
    used_channels = channels or (3 if colour else 1)

    index = {c: i for i, c in enumerate(class_list)}
    split_record: dict = {"kind": kind}
    if not any(f.split == "val" for f in good):
        held = _stratified_val([f for f in good if f.split == "train"], val_fraction, seed, base)
        good = [replace(f, split="val") if f.path in held else f for f in good]
        split_record.update(val_fraction=float(val_fraction), seed=int(seed), val_sha256=_digest(sorted(held), base))
    splits = {}
    for name in SPLITS:
        chosen = [f for f in good if f.split == name]
        if chosen:
            splits[name] = Samples(
                name=name,
                paths=tuple(f.path for f in chosen),
                labels=np.array([index[f.label] for f in chosen], dtype=np.int64),
            )
    return LabelledData(
        source=str(root),
        kind=kind,
        classes=class_list,
        channels=used_channels,
        splits=splits,
        split_record=split_record,
        notes=tuple(notes),
    )


def _open_idx(root: Path, channels: int, classes: Sequence[str] | None) -> LabelledData:
    splits = {}
    for name in ("train", "test"):
        try:
            find_split_files(root, name)
        except ConfigError:
            continue
        split = load_split(root, name)
        splits[name] = Samples(name=name, labels=split.labels, images=split.images)
    if not splits:
        find_split_files(root, "test")  # raises the clear "no Fashion-MNIST files" error
    return LabelledData(
        source=str(root),
        kind="idx",
        classes=tuple(classes) if classes is not None else FASHION_MNIST_CLASSES,
        channels=channels,
        splits=splits,
        split_record={"kind": "idx"},
    )


def check_same_split(data: LabelledData, record: object, what: str, *, strict: bool) -> str | None:
    """Compare the split ``data`` made with the one a checkpoint recorded (``record``).

    With ``strict`` (resuming) a difference is an error; otherwise it is returned as a note.
    """
    if not isinstance(record, dict) or "val_sha256" not in record:
        return None
    if data.split_record.get("val_sha256") == record["val_sha256"]:
        return None
    message = (
        f"the validation images of '{data.source}' differ from those {what} recorded (val fraction "
        f"{record.get('val_fraction')}, seed {record.get('seed')}): the data changed, or another --val-fraction "
        "or --seed was given"
    )
    if strict:
        raise ConfigError(message + "; resume on the same data and options, or start a new run")
    return "warning: " + message
