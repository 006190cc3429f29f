"""Model registry in timm's style: ``create_model(name, **kw)`` and ``list_models()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from nin_edge.runtime.core.errors import ConfigError

from .checkpoint import load_weights
from .zoo import ZooModel, alexnet, nin, vgg11, vgg11_slim

_REGISTRY: dict[str, Callable[..., ZooModel]] = {}


def register_model(fn: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
    """Register a constructor under its function name; returns it unchanged."""
    _REGISTRY[fn.__name__] = fn
    return fn


for _fn in (nin, alexnet, vgg11, vgg11_slim):
    register_model(_fn)


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def model_options(name: str) -> list[str]:
    """The keyword options that ``create_model(name, ...)`` accepts."""
    return list(inspect.signature(_constructor(name)).parameters)


def _constructor(name: str) -> Callable[..., ZooModel]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


# Weights shipped inside the package: trained on Fashion-MNIST, 1 channel in, 10 classes out,
# with the input size they were trained and evaluated at (models/weights/*.json has the recipe).
PRETRAINED = {"nin": ("nin_fashion_mnist.pt", 112)}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def pretrained_path(name: str) -> Path:
    """The shipped checkpoint of model ``name``; a clear error if there is none."""
    _constructor(name)
    if name not in PRETRAINED:
        raise ConfigError(
            f"no pretrained weights are shipped for {name!r}; they exist for: {', '.join(sorted(PRETRAINED))}"
        )
    path = WEIGHTS_DIR / PRETRAINED[name][0]
    if not path.is_file():
        raise ConfigError(
            f"the pretrained weights of {name!r} are missing from this installation ({path}); reinstall nin-edge"
        )
    return path


def pretrained_input_size(name: str) -> int:
    """The input size the shipped weights of ``name`` were trained and evaluated at."""
    pretrained_path(name)
    return PRETRAINED[name][1]


def pretrained_fits(name: str, in_channels: int = 1, num_classes: int = 10) -> bool:
    """Whether shipped weights exist for ``name`` with this many channels and classes."""
    return name in PRETRAINED and (in_channels, num_classes) == (1, 10)


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
        if not pretrained_fits(name, model.in_channels, model.num_classes):
            raise ConfigError(
                f"the pretrained {name} takes 1 channel and gives 10 classes; got in_channels={model.in_channels}, "
                f"num_classes={model.num_classes}"
            )
        load_weights(model, path)
    return model
