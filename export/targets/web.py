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
from typing import TYPE_CHECKING, Any

import click
from nin_edge.runtime.cli.common import CommaList
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.int8 import Int8Target

from ..bundle import build_bundle
from ..pipeline import Deploy
from ..web import WEB_PRECISIONS, WebConfig, WebSummary, check_web_options, write_web

if TYPE_CHECKING:
    from ..pipeline import ExportConfig, VerifiedModel


@dataclass(frozen=True)
class WebOptions:
    """The precisions the page offers (fp32 always; int8 needs calibration data), where
    onnxruntime-web's files are [default: ``web/node_modules/onnxruntime-web/dist`` after ``npm ci``],
    and whether the page also offers WebGPU (its onnxruntime-web build adds 27 MB, so not by default)."""

    precisions: tuple[str, ...] = ("fp32",)
    ort_web: str | None = None
    webgpu: bool = False

    def web_config(self, source: str, out: str | Path) -> WebConfig:
        """The :class:`WebConfig` that writes the web folder ``out`` from the bundle or model ``source``."""
        return WebConfig(source=source, folder=str(out), ort_web=self.ort_web, webgpu=self.webgpu)


class WebTarget:
    """Writes the web folder of the model's bundle."""

    name = "web"
    options_type = WebOptions
    cli_options = (
        click.Option(
            ["--web"],
            type=click.Path(),
            default=None,
            help="Also write a web folder here: a page and an ES module that run the model in a browser (WebAssembly) "
            "and in Node; serve it with nin-serve --web. With --bundle it ships the bundle's fp32 and int8 models.",
        ),
        click.Option(
            ["--web-precisions"],
            type=CommaList(str),
            default=None,
            help="Precisions the web folder offers [default: fp32] (fp32 always; int8 needs --calibration-data).",
        ),
        click.Option(
            ["--ort-web"],
            type=click.Path(file_okay=False),
            default=None,
            help="onnxruntime-web's dist folder [default: web/node_modules/onnxruntime-web/dist after `npm ci` in "
            "web/].",
        ),
        click.Option(
            ["--web-webgpu"],
            is_flag=True,
            default=False,
            help="Also ship onnxruntime-web's WebGPU build (27 MB more) and let the page run the model on WebGPU "
            "where the browser gives an adapter (it says so and uses WebAssembly where not).",
        ),
    )

    def check(self, options: WebOptions, out: Path) -> None:
        check_web_options(out, options.precisions, options.ort_web, options.webgpu)

    def write(self, model: VerifiedModel, options: WebOptions, out: Path) -> WebSummary:
        # Browsers run INT8 on WebAssembly, which has no VNNI: the INT8 model takes the recipe that
        # runs correctly on every CPU (7-bit weights), whatever this machine's class is.
        model = replace(model, config=replace(model.config, int8_target=Int8Target.X86_AVX2.value))
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.bundle-", dir=out.resolve().parent))
        try:
            build_bundle(model, options.precisions, staging / "bundle")
            return write_web(options.web_config(str(staging / "bundle"), out))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        folder, web_precisions, ort_web = values["web"], values["web_precisions"], values["ort_web"]
        webgpu = bool(values["web_webgpu"])
        if folder is None:
            if web_precisions or ort_web or webgpu:
                raise ConfigError(
                    "--web-precisions, --ort-web and --web-webgpu shape the web folder: give --web DIR too"
                )
            return config
        bundle = next((d for d in config.deploy if d.target == "bundle"), None)  # "bundle" < "web": applied already
        if bundle is None:
            precisions = tuple(web_precisions or ("fp32",))
            for p in precisions:  # each precision's options as its export will run them
                replace(config, precision=p).validate()
        else:  # nin-export makes this folder from that bundle (see ``export/cli.py``)
            if web_precisions:
                raise ConfigError(
                    "with --bundle, the web folder ships the bundle's fp32 and int8 models: give --bundle-precisions"
                )
            precisions = tuple(p for p in bundle.options.precisions if p in WEB_PRECISIONS)
            check_web_options(Path(folder), precisions, ort_web, webgpu)
        options = WebOptions(precisions, ort_web, webgpu)
        return replace(config, deploy=(*config.deploy, Deploy(self.name, folder, options)))


TARGET = WebTarget()
