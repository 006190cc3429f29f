"""The rows ``nin-infer`` writes (CSV, JSON lines, Parquet), and resuming: which inputs a row file already holds."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .core.errors import ConfigError, InputError
from .core.files import remove_stale_temporaries

if TYPE_CHECKING:
    from .bulk import ImageResult, InferConfig
    from .classifier import Classifier


#: The column that says which model wrote a row: the first 16 hex digits of the model's sha256
#: (:attr:`Classifier.sha256`). ``--resume`` appends only to rows of the same model.
MODEL_COLUMN = "model_sha256"


def model_sha256(clf: Classifier) -> str:
    """What the :data:`MODEL_COLUMN` of ``clf``'s rows holds."""
    return clf.sha256[:16]


def row_columns(top_k: int) -> list[str]:
    """The columns of a row: the best class, then the next ``top_k - 1``, the error, the model."""
    extra = [name for k in range(2, top_k + 1) for name in (f"label_{k}", f"probability_{k}")]
    return ["input", "label", "index", "probability", *extra, "error", MODEL_COLUMN]


def printable_name(name: str) -> str:
    """``name`` as UTF-8 text: a file name that is not valid UTF-8 (which Python holds with lone
    surrogates) gets its odd bytes written as ``\\xff`` escapes, so every row can be written."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        try:
            raw = name.encode("utf-8", "surrogateescape")  # the bytes the file system gave
        except UnicodeEncodeError:
            return name.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")


def row_of(result: ImageResult, top_k: int, model_sha256: str) -> dict[str, Any]:
    """One result as a row: the columns of :func:`row_columns`, ``None`` where there is no value."""
    row: dict[str, Any] = dict.fromkeys(row_columns(top_k))
    row["input"] = printable_name(result.input)
    if result.top:
        best = result.top[0]
        row.update(label=best.label, index=best.index, probability=best.probability)
        for k, p in enumerate(result.top[1:], start=2):
            row[f"label_{k}"], row[f"probability_{k}"] = p.label, p.probability
    row["error"] = result.error
    row[MODEL_COLUMN] = model_sha256
    return row


class RowWriter(Protocol):
    def write(self, results: list[ImageResult]) -> None: ...
    def close(self) -> None: ...


class _TextRows:
    """CSV or JSON Lines rows appended to a file descriptor (or a text stream), one write per batch.

    A single ``write`` of whole lines to a regular file is never cut short by a signal, so the file
    always ends at a row boundary whatever stops the process.
    """

    def __init__(self, fmt: str, top_k: int, model_sha256: str, sink: int | Any, header: bool) -> None:
        self.fmt, self.columns, self.sink = fmt, row_columns(top_k), sink
        self.top_k, self.model_sha256 = top_k, model_sha256
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
        flat = [row_of(r, self.top_k, self.model_sha256) for r in results]
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

    def __init__(self, path: Path, top_k: int, model_sha256: str, keep_existing: bool) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("writing Parquet needs pyarrow: pip install pyarrow (or write .csv or .jsonl)") from None
        self.pa, self.top_k, self.model_sha256, self.path = pa, top_k, model_sha256, path
        fields = [pa.field("input", pa.string()), pa.field("label", pa.string()), pa.field("index", pa.int64())]
        fields.append(pa.field("probability", pa.float64()))
        for k in range(2, top_k + 1):
            fields += [pa.field(f"label_{k}", pa.string()), pa.field(f"probability_{k}", pa.float64())]
        self.schema = pa.schema([*fields, pa.field("error", pa.string()), pa.field(MODEL_COLUMN, pa.string())])
        self.tmp = path.with_name(f".{path.name}.nin-edge-{os.getpid()}-infer.tmp")
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.pending: list[dict[str, Any]] = []
        if keep_existing and path.is_file():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.GROUP):
                self.writer.write_table(pa.Table.from_batches([batch]).cast(self.schema))

    def write(self, results: list[ImageResult]) -> None:
        self.pending.extend(row_of(r, self.top_k, self.model_sha256) for r in results)
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


def done_inputs(path: Path, fmt: str, top_k: int, model_sha256: str) -> set[str]:
    """The inputs an earlier run of the same model already wrote to ``path``.

    ``--resume`` continues only a file nin-infer's own rows started: the columns this run writes and,
    in every row, this model's digest. Anything else is refused before the file is touched, so a
    refusal leaves it byte for byte as it was. A CSV or JSON Lines file cut inside its last row (it
    cannot happen with nin-infer's whole-batch writes, but a copy may have been cut) has that part
    row dropped, once every whole row has passed these checks.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    want = row_columns(top_k)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
            if names != want:
                raise InputError(_columns_differ(path, names, want))
            table = pq.read_table(path, columns=["input", MODEL_COLUMN])
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise InputError(f"cannot resume '{path}': it is not a readable Parquet file ({exc})") from None
        for n, model in enumerate(table.column(MODEL_COLUMN).to_pylist(), start=1):
            _check_model(path, f"row {n}", model, model_sha256)
        return set(table.column("input").to_pylist())
    whole = _whole_rows_size(path)
    with open(path, "rb") as fh:
        lines = _text_lines(path, fh, whole)
        read = _csv_inputs if fmt == "csv" else _jsonl_inputs
        done = read(path, lines, want, model_sha256)
    if whole < path.stat().st_size:
        os.truncate(path, whole)
    return done


#: Why a file that fails the resume checks is refused, and what to do.
_NOT_OURS = "--resume continues only an output nin-infer wrote; write a new output (or --overwrite this one)"


def _whole_rows_size(path: Path) -> int:
    """The size of ``path`` up to and including its last newline (0 when it has none)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
    return 0


def _text_lines(path: Path, fh: BinaryIO, whole: int) -> Iterator[str]:
    """The lines of ``fh`` up to byte ``whole``, as text; a line that is not UTF-8 is refused."""
    read = 0
    for n, raw in enumerate(fh, start=1):
        read += len(raw)
        if read > whole:
            return
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"cannot resume '{path}': line {n} is not UTF-8 text; {_NOT_OURS}") from None


def _csv_inputs(path: Path, lines: Iterator[str], want: list[str], model_sha256: str) -> set[str]:
    reader = csv.reader(lines)
    try:
        header = next(reader, [])
        if header != want:
            raise InputError(_columns_differ(path, header, want))
        done = set()
        for row in reader:
            if len(row) != len(want):
                raise InputError(
                    f"cannot resume '{path}': row {reader.line_num} has {len(row)} fields, not {len(want)}; {_NOT_OURS}"
                )
            _check_model(path, f"row {reader.line_num}", row[-1], model_sha256)
            done.add(row[0])
    except csv.Error as exc:
        raise InputError(f"cannot resume '{path}': it is not CSV nin-infer wrote ({exc}); {_NOT_OURS}") from None
    return done


def _jsonl_inputs(path: Path, lines: Iterator[str], want: list[str], model_sha256: str) -> set[str]:
    done = set()
    for n, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"cannot resume '{path}': line {n} is not JSON; {_NOT_OURS}") from None
        if not isinstance(row, dict):
            raise InputError(
                f"cannot resume '{path}': line {n} is a JSON {type(row).__name__}, not a row object; {_NOT_OURS}"
            )
        if list(row) != want:
            raise InputError(_columns_differ(path, list(row), want, f" (line {n})"))
        _check_model(path, f"line {n}", row[MODEL_COLUMN], model_sha256)
        done.add(str(row["input"]))
    if not done:
        raise InputError(f"cannot resume '{path}': it holds no whole row; {_NOT_OURS}")
    return done


def _check_model(path: Path, where: str, found: object, model_sha256: str) -> None:
    if found != model_sha256:
        raise InputError(
            f"cannot resume '{path}': its {where} was written by another model ({MODEL_COLUMN} {found}, this "
            f"model's is {model_sha256}); resume with that model, or write a new output for this one"
        )


def _columns_differ(path: Path, found: list[str], want: list[str], where: str = "") -> str:
    if found == want[:-1]:  # the columns before the model was recorded
        return (
            f"cannot resume '{path}': its rows do not record the model that wrote them (no {MODEL_COLUMN} column: "
            "an older nin-infer); write a new output"
        )
    if found[:4] == want[:4] and found[-1:] == want[-1:]:  # nin-infer's rows with another --top-k
        return (
            f"cannot resume '{path}': it has columns {', '.join(found)}{where}, this run writes {', '.join(want)}; "
            "resume with the --top-k the file was written with, or write a new output"
        )
    return (
        f"cannot resume '{path}': it has columns {', '.join(map(str, found)) or 'none'}{where}, not those nin-infer "
        f"writes ({', '.join(want)}); {_NOT_OURS}"
    )


def open_rows(config: InferConfig, top_k: int, model_sha256: str) -> RowWriter:
    """The writer for ``config.output`` in its format, appending when resuming."""
    fmt = config.row_format()
    if config.output == "-":
        return _TextRows(fmt, top_k, model_sha256, sys.stdout, header=True)
    path = Path(config.output or "")
    if fmt == "parquet":
        return _ParquetRows(path, top_k, model_sha256, keep_existing=config.resume)
    append = config.resume and path.is_file() and path.stat().st_size > 0
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return _TextRows(fmt, top_k, model_sha256, os.open(path, flags, 0o666), header=not append)
