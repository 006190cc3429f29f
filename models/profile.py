"""Parameter and multiply-accumulate counts of the zoo's models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from nin_edge.runtime.core.report import Report
from torch import nn

from .zoo import ZooModel


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: ZooModel, input_size: int | None = None) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for one image of ``input_size``.

    Pools, activations and bias additions are not counted, matching the usual convention. The
    count comes from a real forward pass with hooks, so it follows the layers as they are.
    """
    size = model.input_size if input_size is None else input_size
    model.check_input_size(size)
    total = 0

    def hook(layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            per_output = layer.in_channels // layer.groups * int(kh) * int(kw)
            total += int(output[0].numel()) * per_output
        elif isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, size, size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


@dataclass(frozen=True)
class ModelProfile(Report):
    """What a model costs: parameters and MACs at one input size."""

    model: str
    in_channels: int
    num_classes: int
    input_size: int
    params: int
    macs: int


def profile_model(model: ZooModel, input_size: int | None = None) -> ModelProfile:
    """Count ``model``'s parameters and MACs for a square ``input_size`` input."""
    size = model.input_size if input_size is None else input_size
    return ModelProfile(
        model=model.model_name,
        in_channels=model.in_channels,
        num_classes=model.num_classes,
        input_size=size,
        params=count_params(model),
        macs=count_macs(model, size),
    )
