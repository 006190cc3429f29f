"""The ``triton`` target: a Triton Inference Server model repository (ONNX backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..triton import TritonOptions, TritonRepo, check_repository, write_triton_repo

if TYPE_CHECKING:
    from ..pipeline import VerifiedModel


class TritonTarget:
    """``out/<name>/1/model.onnx``, ``config.pbtxt`` (checked against the model) and ``labels.txt``."""

    name = "triton"
    options_type = TritonOptions

    def check(self, options: TritonOptions, out: Path) -> None:
        options.validate()
        check_repository(out)

    def write(self, model: VerifiedModel, options: TritonOptions, out: Path) -> TritonRepo:
        return write_triton_repo(onnx_model=model.data, repository=out, options=options, labels=model.metadata.labels)


TARGET = TritonTarget()
