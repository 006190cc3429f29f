"""Model registry in timm's style: ``create_model(name, **kw)`` and ``list_models()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from nin_edge.runtime.errors import ConfigError

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


def create_model(name: str, **kwargs: object) -> ZooModel:
    """Build the registered model ``name`` with its options (``in_channels``, ``num_classes``, ...)."""
    fn = _constructor(name)
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"model {name!r} has no option {unknown[0]!r}; its options are: {', '.join(options)}")
    return fn(**kwargs)
