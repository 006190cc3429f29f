"""The ``bundle`` target: a deploy folder (ONNX and ORT models per precision, a fixed-batch mobile
variant, ``MODEL_CARD.md`` and ``manifest.json`` with sha256s), built aside and swapped in."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from nin_edge.runtime.bundle import BUNDLE_FOLDER
from nin_edge.runtime.cli.common import CommaList
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import check_replaceable_folder

from ..bundle import BundleSummary, build_bundle, bundle_precisions
from ..pipeline import Deploy
from ..precision import resolve_target

if TYPE_CHECKING:
    from ..pipeline import ExportConfig, VerifiedModel


@dataclass(frozen=True)
class BundleOptions:
    """The precisions the bundle holds (FP32 always; INT8 needs calibration data in the export options),
    and the machine classes of its INT8 models (several: one model per class)."""

    precisions: tuple[str, ...] = ("fp32",)
    int8_targets: tuple[str, ...] = ()


class BundleTarget:
    """Writes :func:`~nin_edge.export.bundle.build_bundle`'s folder."""

    name = "bundle"
    options_type = BundleOptions
    cli_options = (
        click.Option(
            ["--bundle"],
            type=click.Path(),
            default=None,
            help="Write a deploy bundle folder instead of one file: models in ONNX and ORT format, a fixed-batch "
            "mobile variant, MODEL_CARD.md and manifest.json.",
        ),
        click.Option(
            ["--bundle-precisions"],
            type=CommaList(str),
            default="fp32",
            show_default=True,
            help="Precisions in the bundle (fp32 always; int8 needs --calibration-data).",
        ),
        click.Option(
            ["--int8-targets"],
            type=CommaList(str),
            default=None,
            help="With --bundle: one INT8 model per machine class (e.g. x86-avx2,x86-vnni), model.int8.CLASS.onnx; "
            "Classifier(DIR, precision='int8') takes the one for its CPU.",
        ),
    )

    def check(self, options: BundleOptions, out: Path) -> None:
        bundle_precisions(options.precisions)
        for t in options.int8_targets:
            resolve_target(t)
        check_replaceable_folder(out, BUNDLE_FOLDER)  # before any work; a link to a bundle is followed

    def write(self, model: VerifiedModel, options: BundleOptions, out: Path) -> BundleSummary:
        return build_bundle(model, options.precisions, out, options.int8_targets)

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        # nin-export writes a --bundle in place of the one file (see ``export/cli.py``), not beside it.
        folder, precisions, int8_targets = values["bundle"], values["bundle_precisions"], values["int8_targets"]
        if folder is None:
            if int8_targets:
                raise ConfigError("--int8-targets is for --bundle; for one file give --int8-target")
            return config
        if int8_targets and "int8" not in precisions:
            raise ConfigError("--int8-targets needs int8 in --bundle-precisions")
        options = BundleOptions(precisions=tuple(precisions), int8_targets=tuple(int8_targets or ()))
        return replace(config, deploy=(*config.deploy, Deploy(self.name, folder, options)))


TARGET = BundleTarget()
