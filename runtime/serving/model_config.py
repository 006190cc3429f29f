"""Triton's ``config.pbtxt``: the one writer and reader of that file kind.

A config is tritonclient's ``ModelConfig`` protobuf message, written with protobuf's own text
format (never hand-formatted text) and atomically. ``nin-export --triton-repo`` (the ONNX
backend) and ``nin-serve`` (the Python backend) both write through :func:`write_model_config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.files import atomic_output

CONFIG_FILE = "config.pbtxt"


def model_config_pb2() -> tuple[Any, Any]:
    """tritonclient's ``model_config_pb2`` module and protobuf's ``text_format``, or a ConfigError saying
    how to install them."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise ConfigError("a Triton repository needs tritonclient: pip install 'nin-edge[serve]'") from None
    return model_config_pb2, text_format


def write_model_config(cfg: Any, model_dir: str | os.PathLike) -> tuple[Path, str]:
    """Write ``cfg`` (a ``ModelConfig``) as ``model_dir/config.pbtxt``; returns the path and the text."""
    _, text_format = model_config_pb2()
    text = text_format.MessageToString(cfg)
    path = Path(model_dir) / CONFIG_FILE
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return path, text


def read_model_config(path: str | os.PathLike) -> Any:
    """Parse a ``config.pbtxt`` back into a ``ModelConfig`` message."""
    pb, text_format = model_config_pb2()
    return text_format.Parse(Path(path).read_text(), pb.ModelConfig())
