"""The rows ``nin-infer`` writes (CSV, JSON lines, Parquet), and resuming: which inputs a row file already holds."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .core.errors import ConfigError, InputError
from .core.files import remove_stale_temporaries

if TYPE_CHECKING:
    from .bulk import ImageResult, InferConfig


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
