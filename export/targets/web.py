"""The web deploy target: a static folder that classifies images in a browser page, offline.

The folder holds ``index.html`` (pick, drop, paste or photograph an image; top-5 with bars,
latency, the model card's facts), ``nin-edge.mjs`` (the ES module the page and Node share: it
preprocesses exactly as :mod:`nin_edge.runtime.preprocess` does and runs the model), the models
(the bundle's ORT-format files, else ONNX; FP32 and INT8 where the source has them),
onnxruntime-web's WebAssembly build (the version pinned in ``web/package.json``, copied from
``web/node_modules`` after ``npm ci``; never a CDN), its WebGPU build where asked (``webgpu``: 27 MB
more, so never by default) and ``nin-edge.json``, which tells the module
everything it needs: input contract, labels and preprocessing read from the models' own metadata,
the image limits of the Python runtime, and the size and sha256 of every file.

It is built in a temporary folder beside the target and renamed into place only when complete.
Serve it with ``nin-serve --web DIR`` (cross-origin isolation, so WebAssembly gets its threads).

The ``web`` target: a static folder that classifies images in a browser page (and in Node), offline.

The verified model goes through the bundle first (ORT-format conversion checked against ONNX,
INT8 where asked, accuracy and the card's facts), in a staging folder beside ``out``; then
:func:`write_web` turns that bundle into the web folder (see that module).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from nin_edge.runtime import Classifier
from nin_edge.runtime.bundle import open_bundle
from nin_edge.runtime.cli.common import CommaList
from nin_edge.runtime.core.choices import Precision
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import (
    FolderRules,
    atomic_folder,
    check_replaceable_folder,
    make_temporary_folder,
    sha256_file,
)
from nin_edge.runtime.core.metadata import ModelMetadata
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.int8 import Int8Target
from nin_edge.runtime.preprocess import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS

from ..config import Deploy
from ..web_sources import WEB_SOURCES, pinned_ort_web
from .bundle import build_bundle

if TYPE_CHECKING:
    from ..config import ExportConfig
    from ..verified import VerifiedModel


PAGE_FILES = ("index.html", "nin-edge.mjs")
#: onnxruntime-web's WebAssembly build: the ES module, its threaded SIMD loader and the binary.
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: onnxruntime-web's WebGPU build, added on request: in 1.30 ``ort.webgpu.min.mjs`` loads the asyncify
#: build of the WebAssembly module (the native WebGPU execution provider; ``.jsep`` is the older
#: JavaScript one, ``.jspi`` needs JS promise integration, which not every browser has). Its CPU kernels
#: run what WebGPU does not, so the page imports it for the WebGPU backend alone.
ORT_WEBGPU_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
#: The precisions WebGPU runs: onnxruntime-web 1.30's WebGPU provider fails on the INT8 model's
#: QLinearConv at run time (tested 2026-11-30 in Chromium 156 on SwiftShader), so INT8 stays on WebAssembly.
WEBGPU_PRECISIONS = ("fp32",)
DESCRIPTOR = "nin-edge.json"
FORMAT = "nin-edge-web"
FORMAT_VERSION = 1
#: Precisions the browser runs well on WebAssembly's CPU kernels (FP16 has none worth shipping).
WEB_PRECISIONS = ("fp32", "int8")


def web_files(folder: Path) -> dict[str, str]:
    """What nin-edge wrote into a web folder, as its ``nin-edge.json`` lists it: file name -> sha256."""
    try:
        listed = json.loads((folder / DESCRIPTOR).read_text())["files"]
        return {str(name): str(digest) for name, digest in listed.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"web folder '{folder}': its {DESCRIPTOR} is not readable ({exc}); not replacing it"
        ) from None


#: A web folder may be replaced only when it holds nothing but what its nin-edge.json lists.
WEB_FOLDER = FolderRules(record=DESCRIPTOR, listed=web_files, what="web")


def default_ort_web_dist() -> Path:
    """Where ``npm ci`` in ``web/`` puts onnxruntime-web's ``dist`` folder."""
    return WEB_SOURCES / "node_modules" / "onnxruntime-web" / "dist"


@dataclass(frozen=True)
class WebConfig:
    """Options of the web target; each field is also its keyword."""

    #: A bundle folder (``nin-export --bundle``) or one ONNX model written by ``nin-export``.
    source: str = ""
    #: The web folder to write; replaced whole if it is one already.
    folder: str = ""
    #: onnxruntime-web's ``dist`` folder [default: ``web/node_modules/onnxruntime-web/dist``].
    ort_web: str | None = None
    #: Also ship onnxruntime-web's WebGPU build (:data:`ORT_WEBGPU_FILES`, 27 MB) and offer the backend on the page.
    webgpu: bool = False

    def validate(self) -> None:
        """Refuse what cannot work before anything is written."""
        if not self.source or not Path(self.source).exists():
            raise ConfigError(
                f"web target: source '{self.source}' does not exist; give a bundle folder or an ONNX file"
            )
        check_web_target(Path(self.folder))
        ort_web_dist(self.ort_web, self.webgpu)


def check_web_options(folder: Path, precisions: tuple[str, ...], ort_web: str | None, webgpu: bool = False) -> None:
    """Refuse web-target options that cannot work (see :class:`WebConfig`), before any export work."""
    for p in precisions:
        Precision.check(p, "web precision")
        if p not in WEB_PRECISIONS:
            raise ConfigError(
                f"web target: precision {p!r} is not shipped to browsers; give {' or '.join(WEB_PRECISIONS)} "
                "(onnxruntime-web's WebAssembly kernels have no FP16 convolution: FP16 would run as FP32 behind casts)"
            )
    check_web_target(folder)
    ort_web_dist(ort_web, webgpu)


def ort_web_dist(ort_web: str | None, webgpu: bool = False) -> Path:
    """onnxruntime-web's ``dist`` folder (given, or ``web/node_modules``'s), checked for the pinned version's
    files (the WebGPU build's too where ``webgpu``)."""
    dist = Path(ort_web) if ort_web else default_ort_web_dist()
    wanted = ORT_WEB_FILES + (ORT_WEBGPU_FILES if webgpu else ())
    missing = [name for name in wanted if not (dist / name).is_file()]
    if missing:
        raise ConfigError(
            f"web target: onnxruntime-web's files are not in '{dist}' (missing {', '.join(missing)}); run "
            f"`npm ci` in the repository's web/ folder (it pins onnxruntime-web {pinned_ort_web()}), or give "
            "the dist folder of that npm package"
        )
    found = _dist_version(dist)
    if found != pinned_ort_web():
        raise ConfigError(
            f"web target: '{dist}' holds onnxruntime-web {found or 'of unknown version'}; nin-edge.mjs is tested "
            f"with {pinned_ort_web()}: run `npm ci` in web/"
        )
    return dist


def _dist_version(dist: Path) -> str | None:
    package = dist.parent / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_web_target(folder: Path) -> None:
    """Refuse a target that exists and is not a web folder nin-edge wrote (it is never overwritten)."""
    if not str(folder):
        raise ConfigError("web target: no output folder given")
    check_replaceable_folder(folder, WEB_FOLDER)


@dataclass(frozen=True)
class WebSummary(Report):
    """What went into the web folder."""

    folder: str
    models: dict[str, str]
    onnxruntime_web: str
    files: dict[str, int]
    seconds: float
    #: Models of the source that were not shipped, and why (never dropped silently).
    not_shipped: tuple[str, ...] = ()
    #: The backends the page offers: "wasm", and "webgpu" where its build was shipped.
    backends: tuple[str, ...] = ("wasm",)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @property
    def webgpu_bytes(self) -> int:
        """What the WebGPU build adds to the folder (0 without it)."""
        return sum(size for name, size in self.files.items() if name in ORT_WEBGPU_FILES)

    def rows(self) -> list[dict]:
        return [{"file": name, "bytes": size} for name, size in self.files.items()]

    def to_table(self) -> str:
        pairs: list[tuple[str, object]] = [
            ("web folder", self.folder),
            ("models", ", ".join(f"{p}: {name}" for p, name in self.models.items())),
            ("onnxruntime-web", self.onnxruntime_web),
            ("backends", self._backends()),
            ("size", f"{self.total_bytes / 1e6:.1f} MB"),
            ("time", f"{self.seconds:.1f} s"),
            ("serve it", f"nin-serve --web {self.folder}"),
        ]
        pairs += [("not shipped", note) for note in self.not_shipped]
        return format_pairs(pairs) + "\n\n" + format_table(self.rows())

    def _backends(self) -> str:
        if "webgpu" not in self.backends:
            return "WebAssembly (--web-webgpu adds WebGPU)"
        gpu = ", ".join(WEBGPU_PRECISIONS)
        return f"WebAssembly, WebGPU for {gpu} (its build: {self.webgpu_bytes / 1e6:.1f} MB of the size)"


def _sources(source: Path) -> tuple[dict[str, Path], dict[str, Path], dict[str, Any]]:
    """The models to ship and the ONNX files holding their metadata (precision -> file), and the
    card's facts, from a bundle or one model file. A bundle's ORT-format files ship (smaller, no
    graph optimisation at load); their metadata is read from the ONNX files they were checked against."""
    if source.is_dir():
        bundle = open_bundle(source)  # every file checked against the manifest's sha256
        m = bundle.manifest
        models, onnx = {}, {}
        for p in WEB_PRECISIONS:
            if p in bundle.precisions:
                entry = m["models"][p]
                models[p] = bundle.folder / entry.get("ort", entry["onnx"])
                onnx[p] = bundle.folder / entry["onnx"]
        card = {
            "summary": m.get("summary", ""),
            "weights": m["source"]["weights"],
            "params": m["source"]["params"],
            "macs_per_image": m["source"]["macs_per_image"],
            "evaluation": m.get("evaluation"),
            "created": m.get("created"),
            "accuracy": {p: m["models"][p].get("accuracy") for p in models},
        }
        return models, onnx, card
    return {"model": source}, {"model": source}, {}


def _not_shipped(source: Path, shipped: dict[str, Path]) -> tuple[str, ...]:
    """Why each model of a bundle that the web folder leaves out was left out."""
    if not source.is_dir():
        return ()
    notes = []
    for key in open_bundle(source).precisions:
        if key in shipped:
            continue
        if key.startswith("int8."):
            why = (
                "per-CPU-class INT8 models are for native onnxruntime; export with --bundle-precisions int8 for the web"
            )
        else:
            why = f"the web target ships {' and '.join(WEB_PRECISIONS)} only"
        notes.append(f"{key}: {why}")
    return tuple(notes)


def _metadata(models: dict[str, Path]) -> dict[str, ModelMetadata]:
    """Each model's own metadata, read by the runtime (which also checks its graph digest)."""
    metas = {}
    for key, path in models.items():
        metas[key] = Classifier(path, "cpu", verify_weights=True).metadata
    first = next(iter(metas.values()))
    for key, meta in metas.items():
        same = (meta.input_size, meta.in_channels, meta.labels, meta.preprocessing)
        if same != (first.input_size, first.in_channels, first.labels, first.preprocessing):
            raise ConfigError(f"web target: the {key} model's input, labels or preprocessing differ from the others")
    return metas


def descriptor(
    metas: dict[str, ModelMetadata], files: dict[str, Path], card: dict[str, Any], webgpu: bool = False
) -> dict[str, Any]:
    """``nin-edge.json``: what ``nin-edge.mjs`` needs, from the models' metadata (one schema with Python)."""
    meta = next(iter(metas.values()))
    pre = meta.preprocessing
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": meta.model,
        "summary": card.get("summary", ""),
        "input": {
            "name": meta.input_name,
            "channels": meta.in_channels,
            "size": meta.input_size,
            "layout": meta.layout,
        },
        "output": {"name": meta.output_name},
        "labels": list(meta.labels),
        "preprocessing": {
            "color": pre.color,
            "resize": pre.resize,
            "scale": pre.scale,
            "mean": list(pre.mean),
            "std": list(pre.std),
        },
        "limits": {"max_pixels": MAX_IMAGE_PIXELS, "max_aspect_ratio": MAX_ASPECT_RATIO},
        "models": {
            p: {
                "file": path.name,
                "form": path.suffix.lstrip("."),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "accuracy": card.get("accuracy", {}).get(p),
            }
            for p, path in files.items()
        },
        "card": {
            "weights": card.get("weights", meta.weights),
            "params": card.get("params"),
            "macs_per_image": card.get("macs_per_image"),
            "evaluation": card.get("evaluation"),
            "created": card.get("created"),
            "toolkit_version": meta.toolkit_version,
            "opset": meta.opset,
        },
        "onnxruntime_web": pinned_ort_web(),
        # Backend -> the precisions it runs; the page offers WebGPU only where its build was shipped.
        "backends": {
            "wasm": list(files),
            **({"webgpu": [p for p in files if p in WEBGPU_PRECISIONS]} if webgpu else {}),
        },
    }


def write_web(config: WebConfig) -> WebSummary:
    """Write the web folder ``config.folder`` for ``config.source`` (see the module's docstring)."""
    start = time.perf_counter()
    config.validate()
    source, target = Path(config.source), Path(config.folder)
    dist = ort_web_dist(config.ort_web, config.webgpu)
    models, onnx, card = _sources(source)
    metas = _metadata(onnx)
    if "model" in models:  # a single model file: it ships under its own precision
        precision = metas["model"].precision
        if precision not in WEB_PRECISIONS:
            raise ConfigError(f"web target: '{source}' is a {precision} model; the browser runs fp32 and int8 models")
        models, metas = {precision: models["model"]}, {precision: metas["model"]}
    if "fp32" not in models:
        raise ConfigError(f"web target: '{source}' has no fp32 model; the page starts with it")
    with atomic_folder(target, WEB_FOLDER) as tmp:
        shipped = {}
        for p, path in models.items():
            shipped[p] = tmp / path.name
            shutil.copyfile(path, shipped[p])
        for name in PAGE_FILES:
            shutil.copyfile(WEB_SOURCES / name, tmp / name)
        for name in ORT_WEB_FILES + (ORT_WEBGPU_FILES if config.webgpu else ()):
            shutil.copyfile(dist / name, tmp / name)
        desc = descriptor(metas, shipped, card, config.webgpu)
        # Every file with its sha256: what may be replaced by the next export (and nothing else).
        desc["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / DESCRIPTOR).write_text(json.dumps(desc, indent=2) + "\n")
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    return WebSummary(
        folder=str(target),
        models={p: path.name for p, path in shipped.items()},
        onnxruntime_web=desc["onnxruntime_web"],
        files=files,
        seconds=time.perf_counter() - start,
        not_shipped=_not_shipped(source, models),
        backends=tuple(desc["backends"]),
    )


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
        # Named as the web folder's temporaries are: a killed export's staging bundle is cleaned up by the next.
        staging = make_temporary_folder(out.resolve())
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
