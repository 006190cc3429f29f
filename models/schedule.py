"""The learning-rate schedule and the optimiser a training run uses."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .train_checkpoint import last_block

if TYPE_CHECKING:
    from .train_config import TrainConfig


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate at optimiser ``step``: linear warm-up, then the configured schedule."""
    total = config.epochs * steps_per_epoch
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    if config.schedule == "cosine":
        progress = (step - warm) / max(1, total - warm)
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    return config.learning_rate


def make_optimizer(
    config: TrainConfig, model: nn.Module, *, fine_tune: bool = False, fresh: frozenset[str] = frozenset()
) -> torch.optim.Optimizer:
    """The configured optimiser over ``model``'s parameters.

    When ``fine_tune`` (weights loaded with --init-from) and ``backbone_lr_scale`` is not 1 or
    ``freeze_epochs`` is set, there are two parameter groups: the loaded layers (``backbone``) learn at
    lr x ``backbone_lr_scale``, the last block and the layers named in ``fresh`` (those --init-from
    adapted, such as a grey first convolution spread over RGB: ``"0.0"``) at lr. Each group records its
    layers (``layers``) so that a resumed run rebuilds the same groups; :func:`group_lr` gives each
    group's lr.
    """
    head = last_block(model.state_dict())

    def is_fast(name: str) -> bool:
        return name.split(".")[0] == head or layer_of(name) in fresh

    scale = config.backbone_lr_scale
    if scale is None:  # a programming error, not a user's: train() fills it in (fine_tune_defaults)
        raise TypeError("make_optimizer needs backbone_lr_scale filled in by fine_tune_defaults")
    named = list(model.named_parameters())
    split: list[tuple[list[tuple[str, nn.Parameter]], float, bool]] = [(named, 1.0, False)]
    if fine_tune and (scale != 1 or config.freeze_epochs):
        split = [
            ([(n, p) for n, p in named if not is_fast(n)], scale, True),
            ([(n, p) for n, p in named if is_fast(n)], 1.0, False),
        ]
    groups = [
        {
            "params": [p for _, p in members],
            "layers": sorted({layer_of(n) for n, _ in members}, key=lambda n: [int(i) for i in n.split(".")]),
            "lr_scale": group_scale,
            "backbone": backbone,
            "lr": config.learning_rate * group_scale,
        }
        for members, group_scale, backbone in split
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)


def layer_of(parameter: str) -> str:
    """The layer a parameter belongs to: ``"0.0"`` for ``"0.0.weight"``."""
    return parameter.rsplit(".", 1)[0]


def saved_fresh_layers(state: dict) -> frozenset[str]:
    """The top-level layers a resumed fine-tune run learnt at the full lr besides its last block (the
    ``layers`` of its saved non-backbone group; none for runs saved before groups recorded them)."""
    saved = state.get("optimizer")
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, dict) and group.get("backbone") is False and isinstance(group.get("layers"), list):
            return frozenset(str(layer) for layer in group["layers"])
    return frozenset()


def group_lr(config: TrainConfig, group: dict, lr: float, epoch: int) -> float:
    """A parameter group's lr at ``epoch``: the scheduled ``lr`` times its scale, and 0 for the loaded layers
    during the first ``freeze_epochs`` (the new head learns alone first, so its first large gradients do not
    reach and disturb the pretrained features)."""
    if group.get("backbone") and epoch < (config.freeze_epochs or 0):
        return 0.0
    return lr * group.get("lr_scale", 1.0)
