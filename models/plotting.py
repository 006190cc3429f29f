"""Shared plumbing for the optional PNG charts (matplotlib is an optional extra)."""

from __future__ import annotations

from pathlib import Path

from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import atomic_output

PLOT_EXTRA = "pip install 'nin-edge[plot]'"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"charts need matplotlib: {PLOT_EXTRA}") from None
    return plt


def save_png(fig, path: str | Path, title: str | None = None) -> str:
    """Write ``fig`` atomically as a PNG at ``path`` (with ``title`` in its metadata) and close it."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Title": title} if title else None)
    pyplot().close(fig)
    return str(path)
