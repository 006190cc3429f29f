"""NiN and its baselines from D2L, with a registry, cost counters and safe checkpoint loading."""

from typing import TYPE_CHECKING

from nin_edge.runtime.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .cards import FASHION_MNIST_CLASSES, ModelCard, register_model
    from .checkpoint import LoadedWeights, load_weights, read_checkpoint, sha256_file
    from .profile import ModelProfile, count_macs, count_params, profile_model
    from .registry import create_model, list_models, model_card, model_options
    from .zoo import ZooModel, alexnet, nin, nin_block, vgg11, vgg11_slim, vgg_block


__all__ = [
    "FASHION_MNIST_CLASSES",
    "LoadedWeights",
    "ModelCard",
    "ModelProfile",
    "ZooModel",
    "alexnet",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_weights",
    "model_card",
    "model_options",
    "nin",
    "nin_block",
    "profile_model",
    "read_checkpoint",
    "register_model",
    "sha256_file",
    "vgg11",
    "vgg11_slim",
    "vgg_block",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".checkpoint": ("LoadedWeights", "load_weights", "read_checkpoint", "sha256_file"),
        ".profile": ("ModelProfile", "count_macs", "count_params", "profile_model"),
        ".cards": ("FASHION_MNIST_CLASSES", "ModelCard", "register_model"),
        ".registry": ("create_model", "list_models", "model_card", "model_options"),
        ".zoo": ("ZooModel", "alexnet", "nin", "nin_block", "vgg11", "vgg11_slim", "vgg_block"),
    },
)
