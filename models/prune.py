"""Structured pruning of a trained NiN (``nin-prune``): whole channels go, so the model itself shrinks.

torch-pruning's dependency graph removes a convolution's output channels together with the input
channels of every layer that reads them; an importance criterion (the group's L2 or L1 weight norm)
picks which. The run is iterative: each of ``steps`` steps prunes the three blocks before the head a
little further towards the widths that meet ``target_macs`` and fine-tunes with nin-train's own loop
(``train`` with ``init_from``). After every step ``output`` is an ordinary nin-train checkpoint whose
card records the new ``widths`` (so every command rebuilds it) plus a ``prune`` record that lets
``resume`` go on with the next step. The head keeps its widths: its last layer gives the classes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import check_writable, kind_of
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_table
from torch import nn

from .checkpoint import TrainedCard, checkpoint_card, extract_state_dict, load_state_checked, read_checkpoint
from .fine_tune import FineTune, fine_tune
from .registry import create_model, model_card, pretrained_path
from .train_checkpoint import CHECKPOINT_FORMAT, EpochStats, save
from .zoo import NIN_WIDTHS, ZooModel

#: The NiN blocks nin-prune narrows (their indices in the model); the head (7) keeps its widths.
PRUNED_BLOCKS = (0, 2, 4)


PRUNE_EXTRA = "pip install 'nin-edge[prune]'"


def torch_pruning() -> Any:
    """The torch-pruning library (imported when first needed: nin-train does not need it)."""
    try:
        import torch_pruning as tp
    except ImportError:
        raise ConfigError(f"nin-prune needs the torch-pruning library: {PRUNE_EXTRA}") from None
    return tp


class Importance(Choice):
    """How a channel's importance is scored: the L2 or L1 norm of the weights it takes out (the whole
    dependency group: its filter and the input slices of the layers that read it)."""

    L2 = "l2"
    L1 = "l1"


@dataclass(frozen=True)
class PruneConfig:
    """A pruning run; each field is also the ``nin-prune`` flag of the same name."""

    weights: str = ""
    data: str = ""
    target_macs: float = 0.5
    steps: int = 4
    epochs_per_step: int = 1
    importance: str = "l2"
    round_to: int = 16
    output: str = "pruned.pt"
    resume: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    amp: bool = False
    channels_last: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    overwrite: bool = False

    def validate(self) -> None:
        """Check every option before any checkpoint or data is read."""
        torch_pruning()
        if not self.weights and not self.resume:
            raise ConfigError("--weights is required: the NiN checkpoint (nin-train's .pt) to prune")
        if not (
            isinstance(self.target_macs, (int, float))
            and not isinstance(self.target_macs, bool)
            and math.isfinite(self.target_macs)
            and 0 < self.target_macs < 1
        ):
            raise ConfigError(
                "target macs must be a fraction between 0 and 1 of the model's MACs (e.g. 0.5), "
                f"got {self.target_macs!r}"
            )
        if not is_whole_number(self.steps, minimum=1):
            raise ConfigError(f"steps must be a positive whole number, got {self.steps!r}")
        if not is_whole_number(self.epochs_per_step, minimum=0):
            raise ConfigError(f"epochs per step must be a whole number from 0, got {self.epochs_per_step!r}")
        Importance.check(self.importance, "importance")
        if not is_whole_number(self.round_to, minimum=1):
            raise ConfigError(
                f"round to must be a positive whole number of channels (16 suits INT8 kernels; 1 keeps any "
                f"width), got {self.round_to!r}"
            )
        if self.epochs_per_step and not self.data:
            raise ConfigError(
                "--data is required to fine-tune after each step (the images the model was trained on); "
                "--epochs-per-step 0 prunes without fine-tuning"
            )
        check_writable(self.output, "pruned checkpoint")
        if not self.overwrite and kind_of(self.output) == "a regular file" and not _is_pruned(self.output):
            raise ConfigError(
                f"'{self.output}' exists and is not a nin-prune checkpoint: this run would replace it; give "
                "another --output, or --overwrite to replace it"
            )


@dataclass(frozen=True)
class PruneStep:
    """One step: the widths it pruned to, the model's size after it, and its last fine-tune epoch."""

    step: int
    widths: tuple[int, ...]
    macs: int
    params: int
    held_out_acc: float | None


@dataclass(frozen=True)
class PruneReport(Report):
    """What a run did: the model before and after, and every step (those of a resumed run's past too)."""

    output: str
    source: str
    target_macs: float
    base_widths: tuple[int, ...]
    base_macs: int
    base_params: int
    steps: tuple[PruneStep, ...]
    notes: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict]:
        return [
            {**dataclasses.asdict(s), "widths": " ".join(map(str, s.widths)), "macs_ratio": s.macs / self.base_macs}
            for s in self.steps
        ]

    def to_table(self) -> str:
        lines = [
            f"from {self.source}: widths {' '.join(map(str, self.base_widths))}, {self.base_macs:,} MACs, "
            f"{self.base_params:,} parameters",
            format_table(self.rows()),
            f"checkpoint: {self.output}",
        ]
        return "\n".join(lines + list(self.notes))


def _is_pruned(path: str) -> bool:
    """Whether ``path`` is a checkpoint nin-prune wrote (one it may replace)."""
    try:
        return isinstance(read_checkpoint(path).get("prune"), Mapping)
    except Exception:  # any unreadable file is not ours
        return False


def nin_widths(card: TrainedCard) -> tuple[int, ...]:
    """The widths of the blocks before the head that ``card`` records (the book's when it records none)."""
    return tuple(card.model_options.get("widths", NIN_WIDTHS))


def build(card: TrainedCard, widths: tuple[int, ...] | None = None) -> ZooModel:
    """The NiN that ``card`` describes, at ``widths`` if given."""
    options = {**card.model_options, **({"widths": widths} if widths is not None else {})}
    return create_model(
        "nin", in_channels=card.in_channels, num_classes=len(card.labels), input_size=card.input_size, **options
    )


def count_macs(model: nn.Module, card: TrainedCard) -> tuple[int, int]:
    """MACs of one image at the card's input size, and parameters (torch-pruning's counter)."""
    tp = torch_pruning()

    example = torch.zeros(1, card.in_channels, card.input_size, card.input_size)
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def plan_widths(card: TrainedCard, target_macs: float, steps: int, round_to: int) -> list[tuple[int, ...]]:
    """The widths after each step: every block keeps the same share of its channels, the share that
    leaves at most ``target_macs`` of the card's model's MACs after the last step, reached in equal steps.

    Each width is the nearest multiple of ``round_to`` (at least ``round_to``; never above the block's
    width): onnxruntime's INT8 and FP32 convolutions run whole groups of channels, so odd widths waste
    work (docs/pruning.md#widths: at batch 32, 64/176/272 ran INT8 1.4x and FP32 1.4-2.1x faster than
    67/179/268, for 5% fewer MACs)."""
    base = nin_widths(card)
    full = count_macs(build(card), card)[0]

    def scaled(keep: float) -> tuple[int, ...]:
        return tuple(min(w, max(round_to, round(w * keep / round_to) * round_to)) for w in base)

    low, high = 0.0, 1.0  # MACs grow with the share kept: bisect for the largest share within the target
    for _ in range(20):  # a 1e-6 share: far finer than one channel
        mid = (low + high) / 2
        if count_macs(build(card, scaled(mid)), card)[0] <= target_macs * full:
            low = mid
        else:
            high = mid
    if count_macs(build(card, scaled(low)), card)[0] > target_macs * full:
        raise ConfigError(
            f"target macs {target_macs} is below what widths of {round_to} channels per block allow "
            f"({count_macs(build(card, scaled(0)), card)[0] / full:.3f} of the MACs); give a larger --target-macs "
            "or a smaller --round-to"
        )
    return [scaled(1 - (1 - low) * s / steps) for s in range(1, steps + 1)]


def prune_to(model: ZooModel, card: TrainedCard, widths: tuple[int, ...], importance: str) -> None:
    """Remove the least important output channels of every convolution in the pruned blocks until each
    has ``widths`` channels; the layers that read them lose the same input channels (in place)."""
    tp = torch_pruning()

    example = torch.zeros(1, card.in_channels, card.input_size, card.input_size)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    score = tp.importance.GroupMagnitudeImportance(p=2 if importance == Importance.L2 else 1)
    for index, width in zip(PRUNED_BLOCKS, widths, strict=True):
        for conv in (layer for layer in model[index].modules() if isinstance(layer, nn.Conv2d)):
            drop = conv.out_channels - width
            if drop <= 0:
                continue
            everything = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
            weakest = torch.argsort(score(everything))[:drop].tolist()
            graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=weakest).prune()


#: ``--weights`` for the NiN weights shipped with the package (trained on Fashion-MNIST).
PRETRAINED = "pretrained"


def nin_source(path: str, command: str = "nin-prune", verb: str = "prunes") -> tuple[dict, TrainedCard]:
    """The NiN checkpoint ``command`` (which ``verb`` it) starts from and its card; anything but a carded
    NiN checkpoint (or ``pretrained``: the shipped weights, with the registered model's card at their
    input size) is refused."""
    if path == PRETRAINED:
        registered = model_card("nin")
        shipped = TrainedCard(
            labels=registered.labels_for(registered.num_classes),
            in_channels=registered.in_channels,
            input_size=registered.export_size(use_weights=True),
            preprocessing=registered.preprocessing,
        )
        return {"state_dict": read_checkpoint(pretrained_path("nin")), "card": shipped.to_dict()}, shipped
    data = read_checkpoint(path, wants="--weights takes the .pt checkpoint nin-train wrote, or pretrained")
    card = checkpoint_card(data, path)
    if card is None:
        raise ConfigError(
            f"'{path}' has no card (class names, input size): {command} takes a checkpoint nin-train wrote for nin"
        )
    model = data.get("model", "nin")
    if model != "nin":
        raise ConfigError(f"'{path}' is a {model} checkpoint; {command} {verb} nin only")
    return data, card


def _resumed(config: PruneConfig) -> tuple[dict, TrainedCard, dict]:
    """The checkpoint a resumed run goes on from, its card and its prune record (checked against ``config``)."""
    path = config.resume or ""
    data, card = nin_source(path)
    record = data.get("prune")
    if not isinstance(record, Mapping):
        raise ConfigError(
            f"'{path}' is not a nin-prune checkpoint (no prune record); --resume takes nin-prune's output"
        )
    # Runs from before --round-to kept any width: they resume as --round-to 1.
    for key, recorded in (
        ("target_macs", record.get("target_macs")),
        ("steps", record.get("steps")),
        ("importance", record.get("importance")),
        ("round_to", record.get("round_to", 1)),
    ):
        if recorded != getattr(config, key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"'{path}' was pruned with {flag} {recorded}, not {getattr(config, key)}; resume with "
                f"{flag} {recorded}, or start a new run from it with --weights"
            )
    if config.weights and config.weights != record.get("weights"):
        raise ConfigError(
            f"'{path}' was pruned from '{record.get('weights')}', not --weights '{config.weights}'; "
            "leave --weights out to resume, or start a new run"
        )
    return data, card, dict(record)


def run_prune(config: PruneConfig, *, on_epoch: Callable[[EpochStats], None] | None = None) -> PruneReport:
    """Prune ``config.weights`` in ``steps`` steps to at most ``target_macs`` of its MACs, fine-tuning
    after each, and write ``output`` after every step (``resume`` goes on from it)."""
    config.validate()
    if config.resume:
        data, card, record = _resumed(config)
        source_card = TrainedCard.from_dict(record["source_card"], config.resume)
        config = dataclasses.replace(config, weights=str(record["weights"]))
    else:
        data, source_card = nin_source(config.weights)
        card = source_card
        record = {
            "weights": config.weights,
            "target_macs": config.target_macs,
            "steps": config.steps,
            "importance": config.importance,
            "round_to": config.round_to,
            "source_card": source_card.to_dict(),
            "done": [],
        }
    model = build(card)
    path = config.resume or config.weights
    load_state_checked(model, extract_state_dict(data, path), path)
    plan = plan_widths(source_card, config.target_macs, config.steps, config.round_to)
    done = [dict(s) for s in record["done"]]
    if len(done) >= config.steps:
        raise ConfigError(f"'{config.resume}' has done all {config.steps} steps; nothing is left to resume")
    for step in range(len(done) + 1, config.steps + 1):
        widths = plan[step - 1]
        prune_to(model, card, widths, config.importance)
        card = dataclasses.replace(card, model_options={**card.model_options, "widths": widths})
        payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "model": "nin", "state_dict": model.state_dict()}
        payload["card"] = card.to_dict()
        acc = None
        if config.epochs_per_step:
            payload, _ = fine_tune(
                FineTune.of(config, config.epochs_per_step),
                model,
                card,
                data,
                recipe={"init_from": config.weights, "output": config.output},
                on_epoch=on_epoch,
            )
            acc = float(payload["history"][-1]["held_out_acc"])
        macs, params = count_macs(model, card)
        done.append({"step": step, "widths": list(widths), "macs": macs, "params": params, "held_out_acc": acc})
        save(config.output, {**payload, "prune": {**record, "done": done}})
    base_macs, base_params = count_macs(build(source_card), source_card)
    return PruneReport(
        output=config.output,
        source=config.weights,
        target_macs=config.target_macs,
        base_widths=nin_widths(source_card),
        base_macs=base_macs,
        base_params=base_params,
        steps=tuple(PruneStep(**{**s, "widths": tuple(s["widths"])}) for s in done),
    )
