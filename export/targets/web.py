"""The ``web`` target: a static folder that classifies images in a browser page (and in Node), offline.

The verified model goes through the bundle first (ORT-format conversion checked against ONNX,
INT8 where asked, accuracy and the card's facts), in a staging folder beside ``out``; then
:func:`~nin_edge.export.web.write_web` turns that bundle into the web folder (see that module).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nin_edge.runtime.int8 import Int8Target

from ..bundle import build_bundle
from ..web import WebConfig, WebSummary, check_web_options, write_web

if TYPE_CHECKING:
    from ..pipeline import VerifiedModel


@dataclass(frozen=True)
class WebOptions:
    """The precisions the page offers (fp32 always; int8 needs calibration data) and where
    onnxruntime-web's files are [default: ``web/node_modules/onnxruntime-web/dist`` after ``npm ci``]."""

    precisions: tuple[str, ...] = ("fp32",)
    ort_web: str | None = None


class WebTarget:
    """Writes the web folder of the model's bundle."""

    name = "web"
    options_type = WebOptions

    def check(self, options: WebOptions, out: Path) -> None:
        check_web_options(out, options.precisions, options.ort_web)

    def write(self, model: VerifiedModel, options: WebOptions, out: Path) -> WebSummary:
        # Browsers run INT8 on WebAssembly, which has no VNNI: the INT8 model takes the recipe that
        # runs correctly on every CPU (7-bit weights), whatever this machine's class is.
        model = replace(model, config=replace(model.config, int8_target=Int8Target.X86_AVX2.value))
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.bundle-", dir=out.resolve().parent))
        try:
            build_bundle(model, options.precisions, staging / "bundle")
            return write_web(WebConfig(source=str(staging / "bundle"), folder=str(out), ort_web=options.ort_web))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


TARGET = WebTarget()
