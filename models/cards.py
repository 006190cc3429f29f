"""The model card (every fact about a registered model) and the store that ``register_model`` fills.

The zoo registers its models here when it is imported; :mod:`nin_edge.models.registry` imports the
zoo and answers the lookups (``create_model``, ``list_models``, ``model_card``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.metadata import Preprocessing

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class ModelCard:
    """Every fact about a registered model in one place, like timm's ``PretrainedCfg``.

    ``input_size`` is the book's size, used when no weights say otherwise; ``min_input_size`` the
    smallest input its strided layers survive (a test checks it against the built layers);
    ``fixed_input_size`` marks Linear heads that accept only the size they were built for.
    ``weights_file`` names weights shipped in ``models/weights/`` (1 channel, 10 classes), trained
    and evaluated at ``weights_input_size``; ``model_options`` are the constructor options those
    weights need (a pruned NiN's ``widths``), which ``create_model`` uses unless told otherwise and
    the exported metadata carries.
    """

    name: str
    #: What the model is. No parameter count: that depends on its classes and channels, and is measured.
    summary: str
    min_input_size: int
    fixed_input_size: bool
    input_size: int = 224
    in_channels: int = 1
    num_classes: int = 10
    labels: tuple[str, ...] = FASHION_MNIST_CLASSES
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    weights_file: str | None = None
    weights_input_size: int | None = None
    model_options: Mapping[str, Any] = field(default_factory=dict)

    def labels_for(self, num_classes: int) -> tuple[str, ...]:
        """The card's labels for its own class count, otherwise ``class_0`` ... ``class_{n-1}``."""
        if num_classes == len(self.labels):
            return self.labels
        return tuple(f"class_{i}" for i in range(num_classes))

    def weights_fit(self, in_channels: int | None = None, num_classes: int | None = None) -> bool:
        """Whether shipped weights exist and fit this many channels and classes (default: the card's)."""
        channels = self.in_channels if in_channels is None else in_channels
        classes = self.num_classes if num_classes is None else num_classes
        return self.weights_file is not None and (channels, classes) == (self.in_channels, self.num_classes)

    def export_size(self, use_weights: bool) -> int:
        """The input size to export at: the weights' training size when they are used, else the book's."""
        return self.weights_input_size if use_weights and self.weights_input_size else self.input_size


_Constructor = TypeVar("_Constructor", bound=Callable[..., Any])

_REGISTRY: dict[str, tuple[Callable[..., Any], ModelCard]] = {}


def register_model(card: ModelCard) -> Callable[[_Constructor], _Constructor]:
    """Register the decorated constructor under ``card.name``, with its card; returns it unchanged."""

    def decorate(fn: _Constructor) -> _Constructor:
        _REGISTRY[card.name] = (fn, card)
        return fn

    return decorate


def registered_entry(name: str) -> tuple[Callable[..., Any], ModelCard]:
    """The constructor and card registered as ``name``; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def registered_names() -> list[str]:
    """Names registered so far, sorted."""
    return sorted(_REGISTRY)
