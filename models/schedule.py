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


def make_optimizer(config: TrainConfig, model: nn.Module, *, fine_tune: bool = False) -> torch.optim.Optimizer:
    """The configured optimiser over ``model``'s parameters.

    When ``fine_tune`` (weights loaded with --init-from) and ``backbone_lr_scale`` is not 1, there are two
    parameter groups: the layers before the last block learn at lr x ``backbone_lr_scale``, the new last
    block at lr. Each group's ``lr_scale`` is what the training loop multiplies the scheduled lr by.
    """
    head = last_block(model.state_dict())
    named = list(model.named_parameters())
    split: list[tuple[list[nn.Parameter], float]] = [([p for _, p in named], 1.0)]
    if fine_tune and config.backbone_lr_scale != 1:
        split = [
            ([p for n, p in named if n.split(".")[0] != head], config.backbone_lr_scale),
            ([p for n, p in named if n.split(".")[0] == head], 1.0),
        ]
    groups = [{"params": params, "lr_scale": scale, "lr": config.learning_rate * scale} for params, scale in split]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)
