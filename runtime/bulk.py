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

import glob
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .classifier import Classifier, Prediction, check_top_k, default_top_k, top_predictions
from .core.choices import RowFormat
from .core.errors import ConfigError, InputError, NinEdgeError
from .core.files import check_writable
from .core.report import Report, format_table
from .decoding import Decoder, default_workers
from .inputs import IMAGE_EXTENSIONS, Item, check_inputs, expand_inputs, listed_paths
from .providers import parse_providers
from .rows import RowWriter, done_inputs, model_sha256, open_rows, printable_name, row_of

#: File name endings that pick a row format when ``--format`` is not given.
SUFFIX_FORMAT = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class InferConfig:
    """Everything ``nin-infer`` does, as one validated value; each field is the flag of the same name.

    ``inputs`` are files, folders, glob patterns, ``.npy`` stacks and IDX files; ``from_list`` names a
    file with one input per line (``-`` for standard input). With ``output`` the rows go to that file
    (``fmt`` from its extension unless given); without it they are collected for ``report``.
    ``workers`` decode threads (default: as many as cores, at most 4) work ahead of the model.
    ``top_k`` None is the terminal report's default: 5, or every class of a model with fewer.
    """

    model: str
    inputs: tuple[str, ...] = ()
    from_list: str | None = None
    output: str | None = None
    fmt: str | None = None
    provider: str = "auto"
    fallback: bool = False
    precision: str | None = None
    verify_key: str | None = None
    #: None: ``min(5, classes)`` in a report (no ``output``), the best class alone in rows.
    top_k: int | None = None
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
        if self.max_batch < 1 or (self.top_k is not None and self.top_k < 1):
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
        if target.is_file():
            self._check_not_an_input(target)
        exists = target.is_file() and target.stat().st_size > 0
        if exists and not (self.resume or self.overwrite):
            raise ConfigError(
                f"output '{self.output}' exists; pass --resume to skip the inputs it already has and append, "
                "or --overwrite to start it again"
            )

    def _check_not_an_input(self, target: Path) -> None:
        """Refuse an existing output that this run also reads: writing rows to it would destroy it
        (or, for a list read while rows are appended to it, never end)."""
        named = [("model", self.model)] + ([("list file", self.from_list)] if self.from_list not in (None, "-") else [])
        for what, path in named:
            if _same_file(target, path) or (os.path.isdir(path) and _inside(target, path)):
                raise ConfigError(_output_is_input(self.output, what, path))
        if self.from_list not in (None, "-"):  # a listed image: names compared first, so a long list costs no stats
            for path in listed_paths(self.from_list):
                if os.path.basename(path) == target.name and _same_file(target, path):
                    raise ConfigError(_output_is_input(self.output, "listed input", path))
        for arg in self.inputs:
            for path in [arg] if os.path.exists(arg) else glob.iglob(arg, recursive=True):
                walked = (
                    os.path.isdir(path) and _inside(target, path) and target.name.lower().endswith(IMAGE_EXTENSIONS)
                )
                if walked or _same_file(target, path):
                    raise ConfigError(_output_is_input(self.output, "input", path))

    def top_k_for(self, classes: int) -> int:
        """The top-k for a model of ``classes`` classes: as given (refused beyond them), else the default."""
        if self.top_k is None:
            return default_top_k(classes) if self.output is None else 1
        check_top_k(self.top_k, classes, "--top-k")
        return self.top_k

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


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(target: Path, folder: str) -> bool:
    return Path(os.path.realpath(target)).is_relative_to(os.path.realpath(folder))


def _output_is_input(output: str | None, what: str, path: str) -> str:
    where = f"is inside this run's {what} folder" if os.path.isdir(path) else f"is also this run's {what}"
    return (
        f"output '{output}' {where} '{path}': writing rows there would destroy what the run reads; "
        "choose another output file"
    )


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
    #: The model's identity in the rows' ``model_sha256`` column.
    model_sha256: str
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
        return [row_of(r, _top_k(self.results), self.model_sha256) for r in self.results]

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
        verify_key=config.verify_key,
        # onnxruntime's threads spin about 60 ms after each run, taking the cores the decode threads need.
        spinning=False,
    )
    top_k = config.top_k_for(len(clf.labels))
    runner, providers = _runner(config, clf)
    fmt = config.row_format() if config.output else None
    digest = model_sha256(clf)
    skip = done_inputs(Path(config.output), fmt or "", top_k, digest) if config.resume and config.output else set()
    writer = open_rows(config, top_k, digest) if config.output else None
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
                elif printable_name(item.name) in skip:
                    skipped += 1
                else:
                    pending.append((item, pool.submit(decode, item)))
            if pending:
                item, future = pending.popleft()
                window.append((item, prepared_or_error(item, future.result)))
            if len(window) == config.max_batch or (exhausted and not pending):
                results = classify_window(runner, clf, window, top_k)
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
        model_sha256=digest,
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
