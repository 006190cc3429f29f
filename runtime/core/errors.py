"""The toolkit's exception hierarchy.

Every error the toolkit raises on purpose derives from :class:`NinEdgeError`, so an app can catch
one class and every command-line tool can turn it into a single line on stderr. It lives in the
runtime because the runtime is the one package that depends on nothing else of ours.
"""

from __future__ import annotations


class NinEdgeError(Exception):
    """Base class of every error the toolkit raises deliberately."""


class ConfigError(NinEdgeError, ValueError):
    """An option or argument has a value the toolkit cannot use."""


class InputError(NinEdgeError, ValueError):
    """Data handed to a model (tensor, image, file) does not fit what the model expects."""


class ModelFileError(NinEdgeError):
    """A model or checkpoint file is missing, unreadable, corrupt or of the wrong kind."""


class ProviderError(NinEdgeError):
    """An onnxruntime execution provider was asked for but cannot be used."""


class CheckFailedError(NinEdgeError):
    """A verification step (parity, graph invariants) found the result wrong."""
