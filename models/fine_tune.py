"""A short nin-train fine-tune of a model held in memory, for the commands that change a trained NiN and
then train it again (``nin-prune`` after each step, ``nin-qat`` under fake quantization).

The model goes to nin-train as a temporary ``init_from`` checkpoint with its card, so the run is nin-train's
own (optimiser, schedule, split, checks, history) and its output an ordinary checkpoint.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.metadata import Preprocessing
from torch import nn

from .checkpoint import TrainedCard, checkpoint_card, extract_state_dict, load_state_checked, read_checkpoint
from .train import TrainResult, train
from .train_checkpoint import EpochStats
from .train_config import Head, TrainConfig


@dataclass(frozen=True)
class FineTune:
    """The nin-train options of a fine-tune (a command's flags of the same names; ``lr`` and
    ``batch_size`` None: nin-train's defaults for a run with ``--init-from``)."""

    data: str
    epochs: int
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    amp: bool = False
    channels_last: bool = False
    train_limit: int | None = None
    test_limit: int | None = None

    @classmethod
    def of(cls, options: Any, epochs: int) -> FineTune:
        """The fine-tune a command's options ask for: its fields of these names (a frozen dataclass's, e.g.
        ``PruneConfig``), with ``epochs`` given apart (nin-prune's are ``epochs_per_step``)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "epochs"]
        return cls(epochs=epochs, **{name: getattr(options, name) for name in names})

    def config(self, card: TrainedCard, *, init_from: str | None, output: str, val_fraction: float) -> TrainConfig:
        """The nin-train run that fine-tunes ``card``'s NiN (at the card's input size) from ``init_from``."""
        return TrainConfig(
            data=self.data,
            model="nin",
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            input_size=card.input_size,
            head=str(card.model_options.get("head", Head.BOOK)),
            channels=card.in_channels,
            val_fraction=val_fraction,
            seed=self.seed,
            device=self.device,
            workers=self.workers,
            amp=self.amp,
            channels_last=self.channels_last,
            train_limit=self.train_limit,
            test_limit=self.test_limit,
            init_from=init_from,
            output=output,
            plot=False,
            overwrite=True,  # a scratch file of this run
        )

    def check(self, input_size: int = 224) -> None:
        """nin-train's own checks of these options (epochs, lr, batch, limits, device) and ``input_size``,
        before any work."""
        stand_in = TrainedCard(("a", "b"), 1, input_size, Preprocessing())
        scratch = str(Path(tempfile.gettempdir()) / "nin-fine-tune-check.pt")  # checked, never written
        self.config(stand_in, init_from=None, output=scratch, val_fraction=0.1).validate()


def fine_tune(
    options: FineTune,
    model: nn.Module,
    card: TrainedCard,
    source: Mapping[str, Any],
    *,
    recipe: Mapping[str, Any],
    on_epoch: Callable[[EpochStats], None] | None = None,
    prepare: Callable[[nn.Module], None] | None = None,
) -> tuple[dict, TrainResult]:
    """``options.epochs`` epochs of nin-train on ``model`` (described by ``card``; ``source`` is the checkpoint
    it came from, whose split is kept so that its held-out images stay held out). ``model`` takes the tuned
    weights; returns the finished checkpoint (no optimiser or RNG state; its recipe updated with ``recipe``)
    and nin-train's result. ``prepare`` is nin-train's (called on the model it trains)."""
    raw = source.get("recipe")
    source_recipe: Mapping = raw if isinstance(raw, Mapping) else {}
    with tempfile.TemporaryDirectory(prefix="nin-fine-tune-") as tmp:
        init, out = str(Path(tmp) / "source.pt"), str(Path(tmp) / "tuned.pt")
        torch.save({"model": "nin", "state_dict": model.state_dict(), "card": card.to_dict()}, init)
        config = options.config(
            card,
            init_from=init,
            output=out,
            val_fraction=source_recipe.get("val_fraction", TrainConfig.val_fraction),
        )
        result = train(config, on_epoch=on_epoch, prepare=prepare)
        tuned = read_checkpoint(out)
    tuned_card = checkpoint_card(tuned, out)
    if tuned_card is None or tuned_card.labels != card.labels:
        given = ", ".join(tuned_card.labels if tuned_card else ())
        raise ConfigError(
            f"--data '{options.data}' has other classes than the model: {given} against {', '.join(card.labels)}; "
            "fine-tune on the images the model was trained on"
        )
    load_state_checked(model, extract_state_dict(tuned, out), out)
    # A finished checkpoint, not a run to --resume with nin-train: its optimiser and RNG state go.
    tuned = {k: v for k, v in tuned.items() if k not in ("optimizer", "rng")}
    tuned["recipe"] = {**tuned["recipe"], **recipe}
    return tuned, result
