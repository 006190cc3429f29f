"""Model registry in timm's style: ``create_model(name, **kw)`` and ``list_models()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.metadata import Preprocessing

from .checkpoint import load_weights

if TYPE_CHECKING:
    from .zoo import ZooModel

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
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelCard:
    """Every fact about a registered model in one place, like timm's ``PretrainedCfg``.

    ``input_size`` is the book's size, used when no weights say otherwise; ``min_input_size`` the
    smallest input its strided layers survive (a test checks it against the built layers);
    ``fixed_input_size`` marks Linear heads that accept only the size they were built for.
    ``weights_file`` names weights shipped in ``models/weights/`` (1 channel, 10 classes), trained
    and evaluated at ``weights_input_size``.
    """

    name: str
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


_REGISTRY: dict[str, tuple[Callable[..., ZooModel], ModelCard]] = {}


def register_model(card: ModelCard) -> Callable[[Callable[..., ZooModel]], Callable[..., ZooModel]]:
    """Register the decorated constructor under ``card.name``, with its card; returns it unchanged."""

    def decorate(fn: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
        _REGISTRY[card.name] = (fn, card)
        return fn

    return decorate


def _registered() -> dict[str, tuple[Callable[..., ZooModel], ModelCard]]:
    # The zoo registers its models when it is imported, and `nin_edge.models` imports it on first use.
    from . import zoo  # noqa: F401

    return _REGISTRY


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_registered())


def model_options(name: str) -> list[str]:
    """The keyword options that ``create_model(name, ...)`` accepts."""
    return list(inspect.signature(_constructor(name)).parameters)


def _entry(name: str) -> tuple[Callable[..., ZooModel], ModelCard]:
    try:
        return _registered()[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def _constructor(name: str) -> Callable[..., ZooModel]:
    return _entry(name)[0]


def model_card(name: str) -> ModelCard:
    """The card of the registered model ``name``; an unknown name lists the known ones."""
    return _entry(name)[1]


def pretrained_path(name: str) -> Path:
    """The shipped checkpoint of model ``name``; a clear error if there is none."""
    card = model_card(name)
    if card.weights_file is None:
        shipped = sorted(n for n, (_, c) in _registered().items() if c.weights_file)
        raise ConfigError(f"no pretrained weights are shipped for {name!r}; they exist for: {', '.join(shipped)}")
    path = WEIGHTS_DIR / card.weights_file
    if not path.is_file():
        raise ConfigError(
            f"the pretrained weights of {name!r} are missing from this installation ({path}); reinstall nin-edge"
        )
    return path


def create_model(name: str, pretrained: bool = False, **kwargs: object) -> ZooModel:
    """Build the registered model ``name`` with its options (``in_channels``, ``num_classes``, ...).

    ``pretrained=True`` loads the weights shipped with the package (NiN trained on Fashion-MNIST);
    they fit only the default 1 channel and 10 classes.
    """
    fn = _constructor(name)
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"model {name!r} has no option {unknown[0]!r}; its options are: {', '.join(options)}")
    model = fn(**kwargs)
    if pretrained:
        path = pretrained_path(name)
        if not model_card(name).weights_fit(model.in_channels, model.num_classes):
            raise ConfigError(
                f"the pretrained {name} takes 1 channel and gives 10 classes; got in_channels={model.in_channels}, "
                f"num_classes={model.num_classes}"
            )
        load_weights(model, path)
    return model
