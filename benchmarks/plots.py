"""Charts drawn from recorded results: a benchmark JSON file or a training record in, one PNG out.

The documentation build (``docs/hooks.py``) calls these on every build, so the pictures on the site
are redrawn from the files kept in ``benchmarks/results/`` and ``models/weights/`` and cannot go stale.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nin_edge.benchmarks import BenchReport, Row, plot_report
from nin_edge.models.plotting import pyplot, save_png
from nin_edge.models.train_checkpoint import renamed_epoch
from nin_edge.runtime.core.errors import ConfigError


def _read_json(path: Path, expected: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it as JSON ({exc}); expected {expected}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a {type(data).__name__}; expected {expected}")
    return data


def read_bench_report(path: str | Path) -> BenchReport:
    """The :class:`BenchReport` that ``nin-bench --format json`` wrote to ``path``."""
    path = Path(path)
    expected = "nin-bench --format json output (an object with 'environment' and 'results')"
    data = _read_json(path, expected)
    if not isinstance(data.get("environment"), dict) or not isinstance(data.get("results"), list):
        raise ConfigError(f"{path}: has keys {sorted(data)}; expected {expected}")
    try:
        rows = tuple(Row(**r) for r in data["results"])
    except TypeError as exc:
        raise ConfigError(f"{path}: a result row does not fit nin-bench's rows ({exc}); expected {expected}") from None
    return BenchReport(environment=data["environment"], results=rows)


def plot_bench_file(path: str | Path, out: str | Path) -> str:
    """Latency against batch size per model, runtime and precision (and the models' size) from a nin-bench JSON."""
    plot_report(read_bench_report(path), Path(out))
    return str(out)


def plot_training_record(paths: Sequence[str | Path], out: str | Path) -> str:
    """Held-out and training accuracy per epoch over every stage of one or more training records, in order.

    A record (``models/weights/*.json``) holds ``stages``, each with a ``name`` and a ``history`` of
    epochs (``train_acc``, ``held_out_acc``; ``test_acc`` in records written before it was renamed); a stage
    that starts from the previous one's weights
    continues its epoch count, so the curve reads as one training run with its stages marked.
    """
    expected = "a training record with 'stages', each with a 'name' and a 'history' of epochs"
    stages: list[dict[str, Any]] = []
    for path in map(Path, paths):
        found = _read_json(path, expected).get("stages")
        if not isinstance(found, list) or not found:
            raise ConfigError(f"{path}: has no list of stages; expected {expected}")
        for number, stage in enumerate(found, start=1):
            history = stage.get("history") if isinstance(stage, dict) else None
            if not isinstance(history, list) or not history:
                raise ConfigError(f"{path}: stage {number} has no history of epochs; expected {expected}")
            stages.append(stage)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    done = 0
    for stage in stages:
        history = stage["history"]
        epochs = [done + e["epoch"] for e in history]
        held = [renamed_epoch(e)["held_out_acc"] for e in history]
        line = ax.plot(epochs, held, "o-", markersize=3, label=stage["name"])[0]
        ax.plot(epochs, [e["train_acc"] for e in history], ":", color=line.get_color())
        if done:
            ax.axvline(done + 0.5, color="grey", linewidth=0.5)
        done = epochs[-1]
    ax.set(xlabel="epoch (stages in order)", ylabel="accuracy", title="test accuracy (solid) and training (dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_png(fig, out)
