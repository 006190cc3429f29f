"""Fake quantization of a model in place, for quantization-aware training (``nin-qat``).

The forward pass computes what an INT8 model computes: each quantized layer's weights are rounded
to symmetric per-output-channel integers (the scale recomputed from the weights every pass, as
onnxruntime's quantizer computes it from the final weights), and chosen activations to per-tensor
integers whose range a moving-average min/max observer tracks. Gradients pass straight through the
rounding. The layers' forwards are replaced on the instances and the observers live outside the
registered modules, so the model's ``state_dict`` keeps its keys: the checkpoint a fake-quantized
run writes is an ordinary one. This module takes plain integer ranges; which layers and tensors to
quantize, and with which types, is the INT8 recipe's choice (``nin_edge.export.qat``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from nin_edge.runtime.core.errors import ConfigError
from torch import nn

#: The layers an INT8 recipe quantizes or keeps in FP32 (ONNX Conv and Gemm), in module order.
COMPUTE_LAYERS = (nn.Conv2d, nn.Linear)


def compute_layers(model: nn.Module) -> list[nn.Module]:
    """The model's convolutions and linear layers in module order (the order the ONNX graph has them)."""
    return [m for m in model.modules() if isinstance(m, COMPUTE_LAYERS)]


@dataclass(frozen=True)
class FakeQuantSpec:
    """What to fake-quantize: integer ranges as onnxruntime's quantizer uses them, and where.

    ``weight_range`` is the (qmin, qmax) of the symmetric per-channel weights (int8: (-127, 127);
    7-bit: (-64, 64); uint8: (0, 255), zero point in the middle); ``activation_range`` that of the
    per-tensor activations, asymmetric unless ``activation_symmetric``. ``weights`` and ``inputs`` are
    indices into :func:`compute_layers`: the layers whose weights, and whose inputs, are quantized;
    ``output`` quantizes the model's output too (onnxruntime quantizes a NiN's final pooling and logits).
    """

    weight_range: tuple[int, int]
    activation_range: tuple[int, int]
    activation_symmetric: bool
    weights: tuple[int, ...]
    inputs: tuple[int, ...]
    output: bool
    #: Weight of the newest batch in the observers' moving averages (PyTorch's default for QAT).
    momentum: float = 0.01


def symmetric_scale(absmax: torch.Tensor, qmin: int, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of a range symmetric about 0 with ``absmax`` as its end, as onnxruntime's
    ``compute_scale_zp(symmetric=True)``: scale ``2 absmax / (qmax - qmin)`` in float64 stored as
    float32, zero point ``round((qmin + qmax) / 2)``; an all-zero channel gets scale 1."""
    scale = (2 * absmax.double() / (qmax - qmin)).float()
    scale = torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale)
    zero = torch.full_like(scale, float(round((qmin + qmax) / 2)))
    return scale, zero


def fake_quant_weight(weight: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """``weight`` rounded to symmetric per-output-channel integers and back, exactly as onnxruntime's
    quantizer stores it (``round(w / scale) + zero``, half to even); the gradient passes straight through.
    Nothing is clipped: onnxruntime clips to the type's full range, which a scale taken from the largest
    weight never leaves (with 7-bit uint8 weights the largest rounds to 128, one past ``qmax``, and stays)."""
    absmax = weight.detach().abs().flatten(1).amax(1)
    scale, zero = symmetric_scale(absmax, qmin, qmax)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    scale, zero = scale.view(shape), zero.view(shape)
    q = torch.round(weight.detach() / scale) + zero
    return weight + ((q - zero) * scale - weight).detach()


class RangeObserver:
    """The running min and max of one tensor (moving average after the first batch), and the
    per-tensor scale and zero point onnxruntime's quantizer computes from such a range."""

    def __init__(self, qmin: int, qmax: int, symmetric: bool, momentum: float) -> None:
        self.qmin, self.qmax, self.symmetric, self.momentum = qmin, qmax, symmetric, momentum
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None

    def observe(self, x: torch.Tensor) -> None:
        low, high = x.detach().min().float(), x.detach().max().float()
        if self.low is None or self.high is None:
            self.low, self.high = low, high
        else:
            self.low = self.low + self.momentum * (low - self.low)
            self.high = self.high + self.momentum * (high - self.high)

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """``x`` fake-quantized per tensor; the range learns while training (and from the first batch seen)."""
        if training or self.low is None:
            self.observe(x)
        assert self.low is not None and self.high is not None  # observe() just set them
        low, high = torch.clamp(self.low, max=0.0), torch.clamp(self.high, min=0.0)  # 0 must be representable
        if self.symmetric:
            scale, zero = symmetric_scale(torch.maximum(-low, high), self.qmin, self.qmax)
        else:
            scale = ((high.double() - low.double()) / (self.qmax - self.qmin)).float()
            if float(scale) < torch.finfo(torch.float32).tiny:
                return x  # an all-zero tensor so far: nothing to round
            zero = torch.round(self.qmin - low / scale)
        return torch.fake_quantize_per_tensor_affine(
            x, scale.to(x.device), zero.to(x.device, torch.int32), self.qmin, self.qmax
        )


class FakeQuant:
    """``spec``'s fake quantization attached to ``model`` (its layers' forwards replaced on the
    instances); :meth:`remove` restores the plain model. The state_dict's keys do not change."""

    def __init__(self, model: nn.Module, spec: FakeQuantSpec) -> None:
        layers = compute_layers(model)
        wanted = set(spec.weights) | set(spec.inputs)
        if wanted and max(wanted) >= len(layers):
            raise ConfigError(
                f"the fake quantization plan names layer {max(wanted)}, but the model has {len(layers)} "
                "convolution and linear layers"
            )
        self.model, self.spec = model, spec
        self.observers: dict[str, RangeObserver] = {}
        self._patched: list[nn.Module] = []
        for index, layer in enumerate(layers):
            quant_weight, quant_input = index in spec.weights, index in spec.inputs
            if quant_weight or quant_input:
                self._patch(layer, self._layer_forward(layer, index, quant_weight, quant_input))
        if spec.output:
            plain = model.forward
            observer = self._observer("output")
            self._patch(model, lambda module, x: observer(plain(x), module.training))

    def _observer(self, name: str) -> RangeObserver:
        low, high = self.spec.activation_range
        self.observers[name] = RangeObserver(low, high, self.spec.activation_symmetric, self.spec.momentum)
        return self.observers[name]

    def _layer_forward(
        self, layer: nn.Module, index: int, quant_weight: bool, quant_input: bool
    ) -> Callable[[Any, torch.Tensor], torch.Tensor]:
        observer = self._observer(f"input of layer {index}") if quant_input else None
        qmin, qmax = self.spec.weight_range

        def forward(module: Any, x: torch.Tensor) -> torch.Tensor:  # an nn.Conv2d or nn.Linear
            if observer is not None:
                x = observer(x, module.training)
            weight = fake_quant_weight(module.weight, qmin, qmax) if quant_weight else module.weight
            if isinstance(module, nn.Conv2d):
                return module._conv_forward(x, weight, module.bias)
            return F.linear(x, weight, module.bias)

        return forward

    def _patch(self, module: nn.Module, forward: Callable) -> None:
        # An instance attribute (not a registered module or parameter): the state_dict does not see it.
        module.forward = types.MethodType(forward, module)
        self._patched.append(module)

    def remove(self) -> None:
        """Give the layers back their own forwards."""
        for module in self._patched:
            del module.forward
        self._patched.clear()
