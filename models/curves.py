"""Training curves: loss and accuracy per epoch as a PNG."""

from __future__ import annotations

from pathlib import Path

from nin_edge.runtime.core.errors import ConfigError

from .plotting import pyplot, save_png
from .train_checkpoint import CURVES_TITLE, EpochStats


def plot_curves(history: list[EpochStats], path: Path, held_out: str = "test") -> tuple[str | None, tuple[str, ...]]:
    """Draw loss and accuracy per epoch into ``path``; says so when matplotlib is missing."""
    try:
        plt = pyplot()
    except ConfigError as exc:
        return None, (f"curves not plotted: {exc}",)
    epochs = [h.epoch for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h.train_loss for h in history], "o-", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [h.train_acc for h in history], "o-", label="train acc")
    ax2.plot(epochs, [h.held_out_acc for h in history], "s-", label=f"{held_out} acc")
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    return save_png(fig, path, CURVES_TITLE), ()
