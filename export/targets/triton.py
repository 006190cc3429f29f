"""The ``triton`` target: a Triton Inference Server model repository (ONNX backend)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from nin_edge.runtime.cli.common import CommaList, choice

from ..triton import InstanceKind, TritonOptions, TritonRepo, check_repository, write_triton_repo

if TYPE_CHECKING:
    from ..pipeline import ExportConfig, VerifiedModel

_DEFAULTS = TritonOptions()


class TritonTarget:
    """``out/<name>/1/model.onnx``, ``config.pbtxt`` (checked against the model) and ``labels.txt``."""

    name = "triton"
    options_type = TritonOptions
    # The flags share their names with TritonOptions' fields (--triton-name is ``name``).
    cli_options = (
        click.Option(
            ["--triton-repo"],
            type=click.Path(),
            default=None,
            help="Also write a Triton model repository (model.onnx, config.pbtxt, labels.txt) here.",
        ),
        click.Option(
            ["--triton-name", "name"], default=_DEFAULTS.name, show_default=True, help="Model name in the repository."
        ),
        click.Option(
            ["--max-batch"],
            type=int,
            default=_DEFAULTS.max_batch,
            show_default=True,
            help="Triton max_batch_size (0: no batching).",
        ),
        click.Option(
            ["--preferred-batch-sizes"],
            type=CommaList(int, positive=True),
            default=None,
            help="Dynamic batcher's preferred sizes.",
        ),
        click.Option(["--queue-delay-us"], type=int, default=_DEFAULTS.queue_delay_us, show_default=True),
        click.Option(["--instance-count"], type=int, default=_DEFAULTS.instance_count, show_default=True),
        click.Option(
            ["--instance-kind"], type=choice(InstanceKind), default=_DEFAULTS.instance_kind, show_default=True
        ),
        click.Option(
            ["--tensorrt"], is_flag=True, help="Triton: run through the TensorRT accelerator (GPU instances)."
        ),
        click.Option(["--tensorrt-fp16"], is_flag=True, help="Triton: let TensorRT use FP16."),
    )

    def check(self, options: TritonOptions, out: Path) -> None:
        options.validate()
        check_repository(out)

    def write(self, model: VerifiedModel, options: TritonOptions, out: Path) -> TritonRepo:
        return write_triton_repo(onnx_model=model.data, repository=out, options=options, labels=model.metadata.labels)

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        # The export's own fields (``triton_repo``, ``triton``), not a Deploy entry: its report keeps its place.
        repo = values.pop("triton_repo")
        options = TritonOptions(**{**values, "preferred_batch_sizes": values["preferred_batch_sizes"] or ()})
        return replace(config, triton_repo=repo, triton=options)


TARGET = TritonTarget()
