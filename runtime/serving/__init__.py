"""Serving a model beside the runner: a real Triton Inference Server through PyTriton (the ``serve`` extra)."""

import re

from ..core.errors import ConfigError

# Triton names a model by its folder in the repository and in URLs (/v2/models/NAME/infer): letters,
# digits, '_', '.' and '-' are safe in both; '.' and '..' name no folder of their own.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_model_name(name: str, flag: str) -> None:
    """Refuse a name Triton cannot use as a model name (a folder and a URL part)."""
    if not _MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"{flag} {name!r}: expected a plain name of letters, digits, '_', '.', '-' (Triton names the model's "
            "folder and its URL with it)"
        )
