"""Rendering of result dataclasses as an aligned table, JSON, CSV or Markdown.

Results across the toolkit are frozen dataclasses that mix in :class:`Report`; the command-line
tools only pick a format. Standard library only, so the runtime can use it too.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .choices import OutputFormat
from .errors import ConfigError

FORMATS = OutputFormat.values()


def _fields(obj: Any) -> dict[str, Any]:
    # A field marked ``metadata={"report": False}`` (an in-memory model, say) is carried, not rendered.
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.metadata.get("report", True)}


def _plain(value: Any) -> Any:
    """Turn dataclasses, tuples and paths into JSON-ready values; nested reports use their to_dict."""
    if isinstance(value, Report):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Align ``rows`` in columns under a header; numbers right-aligned."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def line(values: Iterable[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=False)]
        return "  ".join(parts).rstrip()

    out = [line(columns), line("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def format_pairs(pairs: Sequence[tuple[str, Any]]) -> str:
    """Render ``(name, value)`` pairs as a two-column block."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in pairs)


def format_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV with a header line; lists are joined with ';'."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ";".join(map(str, v)) if isinstance(v, (list, tuple)) else ("" if v is None else v)
            for v in (row.get(c) for c in columns)
        )
    return buf.getvalue().rstrip("\n")


def format_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a GitHub-flavoured Markdown table."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out.extend("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows)
    return "\n".join(out)


class Report:
    """Mixin for result dataclasses: ``render(fmt)`` in any of :data:`FORMATS`.

    Subclasses override :meth:`rows` (the records for CSV/Markdown) and :meth:`to_table` (the
    human view) where the defaults do not fit.
    """

    def to_dict(self) -> dict[str, Any]:
        """The whole result as JSON-ready data."""
        return _fields(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rows(self) -> list[dict[str, Any]]:
        """Flat records, one per row of the CSV and Markdown views."""
        return [{k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list))}]

    def to_table(self) -> str:
        return format_pairs(list(self.rows()[0].items()))

    def render(self, fmt: str) -> str:
        """Render in ``fmt``: one of ``table``, ``json``, ``csv``, ``markdown``."""
        if fmt == OutputFormat.TABLE:
            return self.to_table()
        if fmt == OutputFormat.JSON:
            return self.to_json()
        if fmt == OutputFormat.CSV:
            return format_csv(self.rows())
        if fmt == OutputFormat.MARKDOWN:
            return format_markdown(self.rows())
        raise ConfigError(f"format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")
