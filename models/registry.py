"""Model registry in timm's style: ``create_model(name, **kw)`` and ``list_models()``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import cast

from nin_edge.runtime.core.errors import ConfigError

from .cards import ModelCard, registered_entry, registered_names
from .checkpoint import load_weights
from .zoo import ZooModel  # importing the zoo registers its models: every lookup here sees them

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return registered_names()


def model_options(name: str) -> list[str]:
    """The keyword options that ``create_model(name, ...)`` accepts."""
    return list(inspect.signature(registered_entry(name)[0]).parameters)


def model_card(name: str) -> ModelCard:
    """The card of the registered model ``name``; an unknown name lists the known ones."""
    return registered_entry(name)[1]


def pretrained_path(name: str) -> Path:
    """The shipped checkpoint of model ``name``; a clear error if there is none."""
    card = model_card(name)
    if card.weights_file is None:
        shipped = [n for n in registered_names() if model_card(n).weights_file]
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
    fn, card = registered_entry(name)
    kwargs = {**card.model_options, **kwargs}  # the options the card's weights need, unless given
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"model {name!r} has no option {unknown[0]!r}; its options are: {', '.join(options)}")
    model = cast(ZooModel, fn(**kwargs))  # the store holds the zoo's constructors
    if pretrained:
        path = pretrained_path(name)
        if not model_card(name).weights_fit(model.in_channels, model.num_classes):
            raise ConfigError(
                f"the pretrained {name} takes 1 channel and gives 10 classes; got in_channels={model.in_channels}, "
                f"num_classes={model.num_classes}"
            )
        load_weights(model, path)
    return model
