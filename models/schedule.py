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
    total = config.planned_epochs * steps_per_epoch
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    if config.schedule == "cosine":
        progress = (step - warm) / max(1, total - warm)
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    return config.learning_rate


def make_optimizer(config: TrainConfig, model: nn.Module, *, fine_tune: bool = False) -> torch.optim.Optimizer:
    """The configured optimiser over ``model``'s parameters.

    When ``fine_tune`` (weights loaded with --init-from) and ``backbone_lr_scale`` is not 1 or
    ``freeze_epochs`` is set, there are two parameter groups: the layers before the last block (``backbone``)
    learn at lr x ``backbone_lr_scale``, the new last block at lr. :func:`group_lr` gives each group's lr.
    """
    scale = config.backbone_lr_scale
    if scale is None or config.freeze_epochs is None:
        raise ValueError("auto --backbone-lr-scale/--freeze-epochs are chosen before the optimiser is made")
    head = last_block(model.state_dict())
    named = list(model.named_parameters())
    split: list[tuple[list[nn.Parameter], float, bool]] = [([p for _, p in named], 1.0, False)]
    if fine_tune and (scale != 1 or config.freeze_epochs):
        split = [
            ([p for n, p in named if n.split(".")[0] != head], scale, True),
            ([p for n, p in named if n.split(".")[0] == head], 1.0, False),
        ]
    groups = [
        {"params": params, "lr_scale": scale, "backbone": backbone, "lr": config.learning_rate * scale}
        for params, scale, backbone in split
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)


def group_lr(config: TrainConfig, group: dict, lr: float, epoch: int) -> float:
    """A parameter group's lr at ``epoch``: the scheduled ``lr`` times its scale, and 0 for the loaded layers
    during the first ``freeze_epochs`` (the new head learns alone first, so its first large gradients do not
    reach and disturb the pretrained features)."""
    if group.get("backbone") and epoch < (config.freeze_epochs or 0):
        return 0.0
    return lr * group.get("lr_scale", 1.0)
