"""The ``bundle`` target: a deploy folder (ONNX and ORT models per precision, a fixed-batch mobile
variant, ``MODEL_CARD.md`` and ``manifest.json`` with sha256s), built aside and swapped in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nin_edge.runtime.bundle import BUNDLE_FOLDER
from nin_edge.runtime.core.files import check_replaceable_folder

from ..bundle import BundleSummary, build_bundle, bundle_precisions
from ..precision import resolve_target

if TYPE_CHECKING:
    from ..pipeline import VerifiedModel


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

    def check(self, options: BundleOptions, out: Path) -> None:
        bundle_precisions(options.precisions)
        for t in options.int8_targets:
            resolve_target(t)
        check_replaceable_folder(out, BUNDLE_FOLDER)  # before any work; a link to a bundle is followed

    def write(self, model: VerifiedModel, options: BundleOptions, out: Path) -> BundleSummary:
        return build_bundle(model, options.precisions, out, options.int8_targets)


TARGET = BundleTarget()
