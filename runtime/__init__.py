"""Embeddable onnxruntime runner for models written by nin-export.

Imports only numpy, onnxruntime and the standard library (Pillow lazily, for image files), so an
app can ship it without torch::

    from nin_edge.runtime import Classifier
    clf = Classifier("nin.onnx", provider="cpu")
    clf.classify(images, top_k=3)
"""

from typing import TYPE_CHECKING

from nin_edge.runtime.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .classifier import Classifier, ModelDescription, Prediction, softmax
    from .core.errors import CheckFailedError, ConfigError, InputError, ModelFileError, NinEdgeError, ProviderError
    from .core.metadata import ModelMetadata, Preprocessing
    from .openvino import OpenVinoOptions
    from .preprocess import MAX_IMAGE_PIXELS, preprocess_image, read_image, resize_bilinear
    from .session import RuntimeConfig


__all__ = [
    "CheckFailedError",
    "Classifier",
    "ConfigError",
    "InputError",
    "MAX_IMAGE_PIXELS",
    "ModelDescription",
    "ModelFileError",
    "ModelMetadata",
    "NinEdgeError",
    "OpenVinoOptions",
    "Prediction",
    "Preprocessing",
    "ProviderError",
    "RuntimeConfig",
    "preprocess_image",
    "read_image",
    "resize_bilinear",
    "softmax",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".classifier": ("Classifier", "ModelDescription", "Prediction", "softmax"),
        ".core.errors": (
            "CheckFailedError",
            "ConfigError",
            "InputError",
            "ModelFileError",
            "NinEdgeError",
            "ProviderError",
        ),
        ".core.metadata": ("ModelMetadata", "Preprocessing"),
        ".openvino": ("OpenVinoOptions",),
        ".preprocess": ("MAX_IMAGE_PIXELS", "preprocess_image", "read_image", "resize_bilinear"),
        ".session": ("RuntimeConfig",),
    },
    install_hints={
        "onnxruntime": "nin-edge needs onnxruntime, which comes with one of its extras: pip install 'nin-edge[cpu]', "
        "or 'nin-edge[gpu]' on a machine with an NVIDIA GPU (never both)"
    },
)
