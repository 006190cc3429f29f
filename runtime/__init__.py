"""Embeddable onnxruntime runner for models written by nin-export.

Imports only numpy, onnxruntime and the standard library (Pillow lazily, for image files), so an
app can ship it without torch::

    from nin_edge.runtime import Classifier
    clf = Classifier("nin.onnx", provider="cpu")
    clf.classify(images, top_k=3)
"""

try:
    import onnxruntime  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "nin-edge needs onnxruntime, which comes with one of its extras: pip install 'nin-edge[cpu]', "
        "or 'nin-edge[gpu]' on a machine with an NVIDIA GPU (never both)"
    ) from exc

from .classifier import Classifier, ModelDescription, Prediction, softmax
from .core.errors import CheckFailedError, ConfigError, InputError, ModelFileError, NinEdgeError, ProviderError
from .core.metadata import ModelMetadata, Preprocessing
from .preprocess import MAX_IMAGE_PIXELS, preprocess_image, read_image, resize_bilinear
from .session import RuntimeConfig

__all__ = [
    "MAX_IMAGE_PIXELS",
    "CheckFailedError",
    "Classifier",
    "ConfigError",
    "InputError",
    "ModelDescription",
    "ModelFileError",
    "ModelMetadata",
    "NinEdgeError",
    "Prediction",
    "Preprocessing",
    "ProviderError",
    "RuntimeConfig",
    "preprocess_image",
    "read_image",
    "resize_bilinear",
    "softmax",
]
