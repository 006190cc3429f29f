"""Bulk inference: a folder of a million images through a model, streamed, on one machine.

``run_infer(InferConfig(...))`` is the library call behind ``nin-infer``. Inputs are listed lazily
(files, folders walked in a stable order, glob patterns, a list file, ``.npy`` stacks, IDX files);
a small pool of decode workers reads and preprocesses images ahead of the model; the main thread
runs batches of ``max_batch`` and writes one row per image as each batch finishes. Memory stays flat
with the number of images: at most ``queue_depth`` prepared images exist at a time.

A bad image becomes a row with its error and the run goes on. CSV and JSON Lines outputs are
appended one whole batch per ``write`` call, so a run stopped in any way (Ctrl-C, SIGTERM,
``kill -9``) leaves a file that ends at a whole row, and ``resume`` continues it. Parquet cannot be
appended to: it is written to a temporary file that replaces the output when the run ends or is
interrupted (Ctrl-C, SIGTERM); after ``kill -9`` the previous file is left as it was.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .classifier import Classifier, Prediction, top_predictions
from .core.choices import RowFormat
from .core.errors import ConfigError, InputError, NinEdgeError
from .core.files import IMAGES_MAGIC, check_writable, load_npy, read_idx, remove_stale_temporaries
from .core.metadata import Preprocessing
from .core.report import Report, format_table
from .preprocess import preprocess_image, read_image
from .providers import parse_providers

#: What a folder walk picks up (any of these, in any letter case); other files in a folder are skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


#: File name endings that pick a row format when ``--format`` is not given.
SUFFIX_FORMAT = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class InferConfig:
    """Everything ``nin-infer`` does, as one validated value; each field is the flag of the same name.

    ``inputs`` are files, folders, glob patterns, ``.npy`` stacks and IDX files; ``from_list`` names a
    file with one input per line (``-`` for standard input). With ``output`` the rows go to that file
    (``fmt`` from its extension unless given); without it they are collected for ``report``.
    ``workers`` decode threads (default: as many as cores, at most 4) work ahead of the model.
    """

    model: str
    inputs: tuple[str, ...] = ()
    from_list: str | None = None
    output: str | None = None
    fmt: str | None = None
    provider: str = "auto"
    fallback: bool = False
    precision: str | None = None
    top_k: int = 1
    max_batch: int = 32
    workers: int | None = None
    resume: bool = False
    overwrite: bool = False
    triton_url: str | None = None
    triton_model: str | None = None

    def validate(self) -> None:
        """Refuse contradictory or impossible options before any model is loaded."""
        parse_providers(self.provider)
        if not self.inputs and self.from_list is None:
            raise ConfigError("no inputs: give image files, folders, glob patterns or .npy/IDX files, or --from-list")
        if self.max_batch < 1 or self.top_k < 1:
            raise ConfigError(f"max_batch and top_k must be at least 1, got {self.max_batch} and {self.top_k}")
        if self.workers is not None and not 1 <= self.workers <= 64:
            raise ConfigError(f"workers must be from 1 to 64, got {self.workers}")
        if self.output is None or self.output == "-":
            if self.resume or self.overwrite:
                raise ConfigError("--resume and --overwrite need --output FILE")
            if self.output == "-" and self.row_format() == "parquet":
                raise ConfigError("Parquet cannot be streamed to standard output; give --output FILE.parquet")
            return
        if self.resume and self.overwrite:
            raise ConfigError("give --resume (continue the output) or --overwrite (start it again), not both")
        self.row_format()
        target = check_writable(self.output)
        exists = target.is_file() and target.stat().st_size > 0
        if exists and not (self.resume or self.overwrite):
            raise ConfigError(
                f"output '{self.output}' exists; pass --resume to skip the inputs it already has and append, "
                "or --overwrite to start it again"
            )

    def row_format(self) -> str:
        """The output file's format: ``fmt`` when given, else from the output's extension."""
        if self.fmt is not None:
            return RowFormat.check(self.fmt, "--format with --output")
        if self.output == "-":
            raise ConfigError("--output - (standard output) needs --format csv or jsonl")
        suffix = Path(self.output or "").suffix.lower()
        if suffix not in SUFFIX_FORMAT:
            raise ConfigError(
                f"cannot tell the format of output '{self.output}' from its extension; name it .csv, .jsonl or "
                ".parquet, or pass --format csv, jsonl or parquet"
            )
        return SUFFIX_FORMAT[suffix]


@dataclass(frozen=True)
class ImageResult:
    """One image's top-k predictions, or why it could not be classified."""

    input: str
    top: tuple[Prediction, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class InferReport(Report):
    """What a run did: how many images, how many failed, how fast; the results when they were kept."""

    model: str
    providers: tuple[str, ...]
    images: int
    errors: int
    skipped: int
    seconds: float
    images_per_s: float
    output: str | None
    format: str | None
    decode_workers: int
    first_error: str | None = None
    fallback_reason: str | None = None
    #: What the runtime warned about while loading (a fallback, an INT8 model made for another CPU).
    warnings: tuple[str, ...] = ()
    results: tuple[ImageResult, ...] = ()

    def summary(self) -> str:
        """The one line a run ends with: images, errors, time, rate (and what was skipped)."""
        skipped = f", {self.skipped:,} skipped (already in the output)" if self.skipped else ""
        where = f" -> {self.output}" if self.output else ""
        return (
            f"{self.images:,} images, {self.errors:,} {'error' if self.errors == 1 else 'errors'}{skipped}, "
            f"{self.seconds:.1f} s, {self.images_per_s:,.1f} images/s{where}"
        )

    def rows(self) -> list[dict]:
        return [row_of(r, _top_k(self.results)) for r in self.results]

    def to_table(self) -> str:
        if not self.results:
            return self.summary()
        rows = [
            {
                "input": r.input,
                "label": r.top[0].label if r.top else None,
                "probability": round(r.top[0].probability, 4) if r.top else None,
                "next": ", ".join(f"{p.label} {p.probability:.3f}" for p in r.top[1:]),
                "error": r.error or "",
            }
            for r in self.results
        ]
        columns = ["input", "label", "probability"]
        columns += [c for c in ("next", "error") if any(row[c] for row in rows)]
        return f"model {self.model} on {', '.join(self.providers)}\n" + format_table(rows, columns)


def _top_k(results: Iterable[ImageResult]) -> int:
    return max((len(r.top) for r in results), default=1)


def row_columns(top_k: int) -> list[str]:
    """The columns of a row: the best class, then the next ``top_k - 1``, then the error."""
    extra = [name for k in range(2, top_k + 1) for name in (f"label_{k}", f"probability_{k}")]
    return ["input", "label", "index", "probability", *extra, "error"]


def row_of(result: ImageResult, top_k: int) -> dict[str, Any]:
    """One result as a row: the columns of :func:`row_columns`, ``None`` where there is no value."""
    row: dict[str, Any] = dict.fromkeys(row_columns(top_k))
    row["input"] = result.input
    if result.top:
        best = result.top[0]
        row.update(label=best.label, index=best.index, probability=best.probability)
        for k, p in enumerate(result.top[1:], start=2):
            row[f"label_{k}"], row[f"probability_{k}"] = p.label, p.probability
    row["error"] = result.error
    return row


# -- listing ------------------------------------------------------------------------------------


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

    uint8 ``(H,W)`` and ``(H,W,C)`` with C in 1, 3, 4 are one image; ``(N,H,W)`` and ``(N,H,W,C)``
    are stacks. float32 ``(C,H,W)`` / ``(N,C,H,W)`` are tensors already preprocessed for the model.
    """
    try:
        if _is_idx(path):
            array = read_idx(path, IMAGES_MAGIC)
        else:
            array = load_npy(path)
    except NinEdgeError as exc:
        yield Item(path, error=str(exc))
        return
    if array.dtype not in (np.uint8, np.float32):
        yield Item(
            path,
            error=f"array file '{path}' holds {array.dtype} {tuple(array.shape)}; expected uint8 images (H,W), "
            "(H,W,C), (N,H,W) or (N,H,W,C), or float32 tensors (C,H,W) or (N,C,H,W) prepared for the model",
        )
        return
    single = array.ndim == 2 or (array.ndim == 3 and array.dtype == np.uint8 and array.shape[2] in (1, 3, 4))
    if array.dtype == np.float32 and array.ndim == 3:
        single = True
    if single:
        yield Item(path, array=array)
        return
    if array.ndim not in (3, 4):
        yield Item(path, error=f"array file '{path}' has shape {tuple(array.shape)}; expected one image or a stack")
        return
    for i in range(len(array)):
        yield Item(f"{path}[{i}]", array=array[i])


def _walk(folder: str) -> Iterator[Item]:
    """Image files under ``folder``, recursively, in name order at every level (``find | sort`` order).

    One folder's names are held (sorted) at a time per level: about 70 MB for a million files in
    one folder, nothing that grows with the files of other folders. Names with an image extension
    are taken for files without a ``stat`` each; the others are checked for being folders.
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:  # an unreadable folder is an error row; the rest of the tree goes on
        yield Item(folder, error=f"cannot list folder '{folder}': {exc.strerror or exc}")
        return
    for name in names:
        path = os.path.join(folder, name)
        if name.lower().endswith(IMAGE_EXTENSIONS):
            yield Item(path, path=path)
        elif os.path.isdir(path):
            yield from _walk(path)


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


def _listed(from_list: str) -> Iterator[str]:
    """Paths from a list file (or stdin for ``-``): one per line; blank lines and ``#`` comments skipped."""
    stream = sys.stdin if from_list == "-" else open(from_list, encoding="utf-8")
    try:
        for line in stream:
            path = line.rstrip("\r\n")
            if path.strip() and not path.lstrip().startswith("#"):
                yield path
    finally:
        if stream is not sys.stdin:
            stream.close()


def expand_inputs(inputs: Iterable[str], from_list: str | None = None) -> Iterator[Item]:
    """Every image the inputs name, lazily and in a stable order.

    A folder is walked for :data:`IMAGE_EXTENSIONS`; a pattern's matches are sorted (so a pattern
    holds its match list in memory: for millions of files name the folder instead); listed paths
    are taken as they are (a missing one becomes an error row).
    """
    for arg in inputs:
        if os.path.isdir(arg):
            yield from _walk(arg)
        elif os.path.exists(arg):
            yield from _one(arg)
        else:
            for match in sorted(glob.iglob(arg, recursive=True)):
                if os.path.isdir(match):
                    yield from _walk(match)
                else:
                    yield from _one(match)
    if from_list is not None:
        for path in _listed(from_list):
            if os.path.isdir(path):
                yield from _walk(path)
            else:
                yield from _one(path)


# -- decoding -----------------------------------------------------------------------------------


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


# -- writing ------------------------------------------------------------------------------------


class RowWriter(Protocol):
    def write(self, results: list[ImageResult]) -> None: ...
    def close(self) -> None: ...


class _TextRows:
    """CSV or JSON Lines rows appended to a file descriptor (or a text stream), one write per batch.

    A single ``write`` of whole lines to a regular file is never cut short by a signal, so the file
    always ends at a row boundary whatever stops the process.
    """

    def __init__(self, fmt: str, top_k: int, sink: int | Any, header: bool) -> None:
        self.fmt, self.columns, self.sink = fmt, row_columns(top_k), sink
        self.top_k = top_k
        if fmt == "csv" and header:
            self.record(self._csv([self.columns]))

    def _csv(self, rows: list[list[Any]]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue()

    def record(self, text: str) -> None:
        if isinstance(self.sink, int):
            data = text.encode("utf-8")
            while data:
                data = data[os.write(self.sink, data) :]
        else:
            self.sink.write(text)
            self.sink.flush()

    def write(self, results: list[ImageResult]) -> None:
        flat = [row_of(r, self.top_k) for r in results]
        if self.fmt == "csv":
            self.record(self._csv([["" if row[c] is None else row[c] for c in self.columns] for row in flat]))
        else:
            self.record("".join(json.dumps(row) + "\n" for row in flat))

    def close(self) -> None:
        if isinstance(self.sink, int):
            os.close(self.sink)
        else:
            self.sink.flush()


class _ParquetRows:
    """Parquet rows: row groups of about 10,000 rows in a temporary file renamed over the output on close."""

    GROUP = 10_000

    def __init__(self, path: Path, top_k: int, keep_existing: bool) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("writing Parquet needs pyarrow: pip install pyarrow (or write .csv or .jsonl)") from None
        self.pa, self.top_k, self.path = pa, top_k, path
        fields = [pa.field("input", pa.string()), pa.field("label", pa.string()), pa.field("index", pa.int64())]
        fields.append(pa.field("probability", pa.float64()))
        for k in range(2, top_k + 1):
            fields += [pa.field(f"label_{k}", pa.string()), pa.field(f"probability_{k}", pa.float64())]
        self.schema = pa.schema([*fields, pa.field("error", pa.string())])
        self.tmp = path.with_name(f".{path.name}.nin-edge-{os.getpid()}-infer.tmp")
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.pending: list[dict[str, Any]] = []
        if keep_existing and path.is_file():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.GROUP):
                self.writer.write_table(pa.Table.from_batches([batch]).cast(self.schema))

    def write(self, results: list[ImageResult]) -> None:
        self.pending.extend(row_of(r, self.top_k) for r in results)
        if len(self.pending) >= self.GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(self.pa.Table.from_pylist(self.pending, schema=self.schema))
            self.pending = []

    def close(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.path)
        remove_stale_temporaries(self.path)  # those of runs that were killed (kill -9) before they could close


def done_inputs(path: Path, fmt: str, top_k: int) -> set[str]:
    """The inputs an earlier run already wrote to ``path``, checking its columns match this run's.

    A CSV or JSON Lines file cut inside a row (it cannot happen with nin-infer's whole-batch writes,
    but a copy may have been cut) is truncated back to its last whole row first.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    want = row_columns(top_k)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=["input"])
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise InputError(f"cannot resume '{path}': it is not a readable Parquet file ({exc})") from None
        if names != want:
            raise InputError(_columns_differ(path, names, want))
        return set(table.column("input").to_pylist())
    _truncate_to_last_row(path)
    done: set[str] = set()
    with open(path, encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            reader = csv.reader(fh)
            header = next(reader, [])
            if header != want:
                raise InputError(_columns_differ(path, header, want))
            done.update(row[0] for row in reader if row)
        else:
            for n, line in enumerate(fh, start=1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise InputError(f"cannot resume '{path}': line {n} is not JSON") from None
                if n == 1 and list(row) != want:
                    raise InputError(_columns_differ(path, list(row), want))
                done.add(row["input"])
    return done


def _columns_differ(path: Path, found: list[str], want: list[str]) -> str:
    return (
        f"cannot resume '{path}': it has columns {', '.join(found)}, this run writes {', '.join(want)}; "
        "resume with the --top-k the file was written with, or write a new output"
    )


def _truncate_to_last_row(path: Path) -> None:
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - 65536))
        tail = fh.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        fh.truncate(size - len(tail) + cut + 1 if cut >= 0 else 0)


def open_rows(config: InferConfig, top_k: int) -> RowWriter:
    """The writer for ``config.output`` in its format, appending when resuming."""
    fmt = config.row_format()
    if config.output == "-":
        return _TextRows(fmt, top_k, sys.stdout, header=True)
    path = Path(config.output or "")
    if fmt == "parquet":
        return _ParquetRows(path, top_k, keep_existing=config.resume)
    append = config.resume and path.is_file() and path.stat().st_size > 0
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return _TextRows(fmt, top_k, os.open(path, flags, 0o666), header=not append)


# -- the run ------------------------------------------------------------------------------------

#: Progress callback: images done so far and seconds since the start.
Progress = Callable[[int, float], None]


class _Logits(Protocol):
    def logits(self, batch: object) -> np.ndarray: ...


def _runner(config: InferConfig, clf: Classifier) -> tuple[_Logits, tuple[str, ...]]:
    if not config.triton_url:
        return clf, tuple(clf.providers)
    from .serving.triton import TritonClassifier  # needs the serve extra; imported only when asked for

    remote = TritonClassifier(config.triton_url, config.triton_model or clf.metadata.model, clf)
    return remote, (f"triton {config.triton_url}",)


def prepared_or_error(item: Item, tensor: Callable[[], np.ndarray]) -> np.ndarray | ImageResult:
    """The prepared tensor ``tensor()`` gives, or the error row of an image that could not be read or prepared."""
    try:
        return tensor()
    except NinEdgeError as exc:
        return ImageResult(item.name, error=" ".join(str(exc).split()))
    except (OSError, ValueError, MemoryError) as exc:  # whatever else one odd file can raise
        return ImageResult(item.name, error=f"{type(exc).__name__}: {exc}")


def classify_window(
    runner: _Logits, clf: Classifier, window: list[tuple[Item, np.ndarray | ImageResult]], top_k: int
) -> list[ImageResult]:
    """Run the window's tensors as one batch; rows come back in input order, error rows in place.

    A model with a fixed batch size gets a short batch padded (and the padding's answers dropped).
    """
    tensors = [t for _, t in window if isinstance(t, np.ndarray)]
    if not tensors:
        return [t for _, t in window if isinstance(t, ImageResult)]
    x = np.stack(tensors)
    n = len(x)
    if clf.fixed_batch and n % clf.fixed_batch:
        x = np.concatenate([x, np.repeat(x[-1:], clf.fixed_batch - n % clf.fixed_batch, axis=0)])
    try:
        preds: list[list[Prediction]] | None = top_predictions(runner.logits(x)[:n], clf.labels, top_k)
        error = None
    except InputError as exc:  # NaN logits: the batch's rows say so, and the run goes on
        preds, error = None, " ".join(str(exc).split())
    answers = iter(preds or [])
    return [
        t if isinstance(t, ImageResult) else ImageResult(item.name, tuple(next(answers)) if preds else (), error)
        for item, t in window
    ]


def load_classifier(model: str | bytes, provider: str, **options: Any) -> tuple[Classifier, tuple[str, ...]]:
    """A :class:`Classifier` and the runtime warnings its loading raised, to be reported once each
    (the command prints them) instead of as Python warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        clf = Classifier(model, provider, **options)
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return clf, tuple(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning))


def run_infer(config: InferConfig, progress: Progress | None = None) -> InferReport:
    """Classify every input of ``config``: the library call behind ``nin-infer``.

    Rows go to ``config.output`` as they come (``-``: standard output), or are kept in the report
    when there is no output. ``progress`` is called after each batch. A bad image is an error row,
    never an exception.
    """
    config.validate()
    check_inputs(config.inputs)
    clf, notes = load_classifier(
        config.model,
        config.provider,
        fallback=config.fallback,
        max_batch=config.max_batch,
        precision=config.precision,
        # onnxruntime's threads spin about 60 ms after each run, taking the cores the decode threads need.
        spinning=False,
    )
    if config.top_k > len(clf.labels):
        raise ConfigError(f"--top-k must be from 1 to {len(clf.labels)} for this model, got {config.top_k}")
    runner, providers = _runner(config, clf)
    fmt = config.row_format() if config.output else None
    skip = done_inputs(Path(config.output), fmt or "", config.top_k) if config.resume and config.output else set()
    writer = open_rows(config, config.top_k) if config.output else None
    kept: list[ImageResult] = []
    workers = config.workers or default_workers()
    decode = Decoder.of(clf)
    images = errors = skipped = 0
    first_error: str | None = None
    start = time.perf_counter()
    # Decoded images waiting for the model: enough to keep every worker busy while a batch runs.
    depth = 2 * config.max_batch + 2 * workers
    pool = ThreadPoolExecutor(workers, thread_name_prefix="nin-decode")
    pending: deque[tuple[Item, Future[np.ndarray]]] = deque()
    try:
        items = expand_inputs(config.inputs, config.from_list)
        # The images of the batch being formed, in input order: a tensor, or the error row it became
        # (counted too, so that a run of unreadable files is written as it goes, not held).
        window: list[tuple[Item, np.ndarray | ImageResult]] = []
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < depth:
                item = next(items, None)
                if item is None:
                    exhausted = True
                elif item.name in skip:
                    skipped += 1
                else:
                    pending.append((item, pool.submit(decode, item)))
            if pending:
                item, future = pending.popleft()
                window.append((item, prepared_or_error(item, future.result)))
            if len(window) == config.max_batch or (exhausted and not pending):
                results = classify_window(runner, clf, window, config.top_k)
                window = []
                images, errors, first_error = record(results, writer, kept, images, errors, first_error)
                if progress:
                    progress(images, time.perf_counter() - start)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    return InferReport(
        model=clf.metadata.model,
        providers=providers,
        images=images,
        errors=errors,
        skipped=skipped,
        seconds=seconds,
        images_per_s=images / seconds if seconds > 0 else 0.0,
        output=config.output,
        format=fmt,
        decode_workers=workers,
        first_error=first_error,
        fallback_reason=clf.fallback_reason,
        warnings=notes,
        results=tuple(kept),
    )


def record(
    done: list[ImageResult],
    writer: RowWriter | None,
    kept: list[ImageResult],
    images: int,
    errors: int,
    first_error: str | None,
) -> tuple[int, int, str | None]:
    """Write a batch's rows (or keep them when there is no writer); the updated counts and first error."""
    if not done:
        return images, errors, first_error
    if writer is not None:
        writer.write(done)
    else:
        kept.extend(done)
    failed = [r for r in done if r.error]
    if failed and first_error is None:
        first_error = failed[0].error
    return images + len(done), errors + len(failed), first_error


def count_inputs(config: InferConfig) -> int:
    """How many images the inputs name, without decoding any (for the progress bar's ETA)."""
    return sum(1 for _ in expand_inputs(config.inputs, None if config.from_list == "-" else config.from_list))
