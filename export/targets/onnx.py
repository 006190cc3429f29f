"""The ``onnx`` target: the verified model as one ONNX file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from nin_edge.runtime.core.files import atomic_output, check_writable
from nin_edge.runtime.core.report import Report

if TYPE_CHECKING:
    from ..config import ExportConfig
    from ..verified import VerifiedModel


@dataclass(frozen=True)
class OnnxOptions:
    """The ONNX file has no options of its own: the export's options shaped the model."""


@dataclass(frozen=True)
class OnnxFile(Report):
    """The file written and its size."""

    output: str
    file_bytes: int


class OnnxTarget:
    """Write the model's bytes to ``out`` atomically."""

    name = "onnx"
    options_type = OnnxOptions
    #: Every export writes the file; its ``--output`` is an export option (:class:`ExportConfig`'s ``output``).
    cli_options: tuple[click.Option, ...] = ()

    def check(self, options: OnnxOptions, out: Path) -> None:
        check_writable(out)

    def write(self, model: VerifiedModel, options: OnnxOptions, out: Path) -> OnnxFile:
        with atomic_output(out) as tmp:
            tmp.write_bytes(model.data)
        return OnnxFile(output=str(out), file_bytes=len(model.data))

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        return config


TARGET = OnnxTarget()
