"""``nin-export``: a thin click layer over :func:`nin_edge.export.run_export`."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import click
from nin_edge.models import list_models
from nin_edge.runtime.cli.common import CommaList, choice, format_option, input_size_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat, Precision
from nin_edge.runtime.core.errors import ConfigError

from .bundle import write_bundle
from .inspect import inspect_path
from .pipeline import Deploy, ExportConfig, run_export
from .precision import OLD_TARGETS, RECIPES, CalibrationMethod, Fp32Layers, Int8Target, Int8Types, ReduceRange
from .steps import MAX_OPSET, MIN_OPSET
from .targets.web import WebOptions
from .triton import InstanceKind, TritonOptions
from .web import WEB_PRECISIONS, WebConfig, check_web_options, write_web

_DEFAULTS = ExportConfig()
_TRITON = TritonOptions()


class _Int8TargetChoice(click.Choice):
    """The INT8 targets; the former spellings (``cpu``) still work, hidden, with a warning."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in OLD_TARGETS:
            click.echo(
                f"warning: --int8-target {value} is now {OLD_TARGETS[value]}; "
                "the old spelling goes in the next release",
                err=True,
            )
            return OLD_TARGETS[value]
        return super().convert(value, param, ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--model", default=_DEFAULTS.model, show_default=True, help=f"Registered model: {', '.join(list_models())}."
)
@click.option(
    "--opset", type=int, default=_DEFAULTS.opset, show_default=True, help=f"ONNX opset ({MIN_OPSET}-{MAX_OPSET})."
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Checkpoint (state_dict) to export [default: the shipped pretrained weights where they exist].",
)
@click.option(
    "--random-init", is_flag=True, help="Export an untrained model (seeded by --seed) instead of pretrained weights."
)
@click.option("--output", type=click.Path(), default=None, help="Output file [default: MODEL.onnx].")
@input_size_option(
    default=None,
    help="Square input side in pixels [default: the size the shipped weights were trained at (NiN: 112), else 224].",
)
@click.option("--in-channels", type=int, default=None, help="[default: the checkpoint's card, else 1].")
@click.option("--num-classes", type=int, default=None, help="[default: the checkpoint's classes, else 10].")
@click.option("--simplify/--no-simplify", default=_DEFAULTS.simplify, show_default=True, help="Run onnxsim.")
@click.option(
    "--check-batch-sizes",
    type=CommaList(int, positive=True),
    default=",".join(map(str, _DEFAULTS.check_batch_sizes)),
    show_default=True,
    help="Batch sizes at which onnxruntime is compared with PyTorch.",
)
@click.option(
    "--atol", type=float, default=_DEFAULTS.atol, show_default=True, help="Largest absolute logit difference allowed."
)
@click.option(
    "--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seed of the random init and parity inputs."
)
@click.option("--precision", type=choice(Precision), default=_DEFAULTS.precision, show_default=True)
@click.option(
    "--calibration-data",
    default=None,
    help="INT8 calibration: --data of training (class folders, manifest, IDX), a flat image folder, .npy, "
    "or 'synthetic'.",
)
@click.option("--calibration-size", type=int, default=_DEFAULTS.calibration_size, show_default=True)
@click.option(
    "--calibration-method",
    type=choice(CalibrationMethod),
    default=_DEFAULTS.calibration_method,
    show_default=True,
)
@click.option(
    "--int8-target",
    type=_Int8TargetChoice(Int8Target.values()),
    default=_DEFAULTS.int8_target,
    show_default=True,
    help="The machine class the INT8 model is for (recorded in it): auto is this machine's; "
    + "; ".join(f"{t}: {r.describe()}" for t, r in RECIPES.items())
    + ".",
)
@click.option(
    "--int8-types",
    type=choice(Int8Types),
    default=_DEFAULTS.int8_types,
    show_default=True,
    help="Activation and weight types [auto: the target's].",
)
@click.option(
    "--int8-reduce-range",
    type=choice(ReduceRange),
    default=_DEFAULTS.int8_reduce_range,
    show_default=True,
    help="7-bit weights [auto: the target's; on only for x86 without VNNI, against AVX2 saturation].",
)
@click.option(
    "--int8-fp32-layers",
    type=choice(Fp32Layers),
    default=_DEFAULTS.int8_fp32_layers,
    show_default=True,
    help="Layers kept FP32 [auto: the target's]: last-block is every Conv/Gemm after the last pooling, ends adds "
    "the first conv.",
)
@click.option(
    "--eval-data",
    default=None,
    help="Labelled data (class folders, manifest, IDX) whose test (else val) split judges a reduced precision.",
)
@click.option("--eval-size", type=int, default=_DEFAULTS.eval_size, show_default=True)
@click.option(
    "--min-agreement",
    type=float,
    default=None,
    help="Lowest top-1 agreement with FP32 a reduced precision may have [default: 0.99, or none with "
    "--max-accuracy-drop].",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=None,
    help="Largest accuracy drop against FP32, in points, on the labelled --eval-data; makes accuracy the gate.",
)
@click.option(
    "--provider", default=_DEFAULTS.provider, show_default=True, help="Where reduced-precision latency is measured."
)
@click.option(
    "--triton-repo",
    type=click.Path(),
    default=None,
    help="Also write a Triton model repository (model.onnx, config.pbtxt, labels.txt) here.",
)
@click.option("--triton-name", "name", default=_TRITON.name, show_default=True, help="Model name in the repository.")
@click.option(
    "--max-batch",
    type=int,
    default=_TRITON.max_batch,
    show_default=True,
    help="Triton max_batch_size (0: no batching).",
)
@click.option(
    "--preferred-batch-sizes",
    type=CommaList(int, positive=True),
    default=None,
    help="Dynamic batcher's preferred sizes.",
)
@click.option("--queue-delay-us", type=int, default=_TRITON.queue_delay_us, show_default=True)
@click.option("--instance-count", type=int, default=_TRITON.instance_count, show_default=True)
@click.option("--instance-kind", type=choice(InstanceKind), default=_TRITON.instance_kind, show_default=True)
@click.option("--tensorrt", is_flag=True, help="Triton: run through the TensorRT accelerator (GPU instances).")
@click.option("--tensorrt-fp16", is_flag=True, help="Triton: let TensorRT use FP16.")
@click.option(
    "--bundle",
    type=click.Path(),
    default=None,
    help="Write a deploy bundle folder instead of one file: models in ONNX and ORT format, a fixed-batch "
    "mobile variant, MODEL_CARD.md and manifest.json.",
)
@click.option(
    "--bundle-precisions",
    type=CommaList(str),
    default="fp32",
    show_default=True,
    help="Precisions in the bundle (fp32 always; int8 needs --calibration-data).",
)
@click.option(
    "--int8-targets",
    type=CommaList(str),
    default=None,
    help="With --bundle: one INT8 model per machine class (e.g. x86-avx2,x86-vnni), model.int8.CLASS.onnx; "
    "Classifier(DIR, precision='int8') takes the one for its CPU.",
)
@click.option(
    "--web",
    type=click.Path(),
    default=None,
    help="Also write a web folder here: a page and an ES module that run the model in a browser (WebAssembly) "
    "and in Node; serve it with nin-serve --web. With --bundle it ships the bundle's fp32 and int8 models.",
)
@click.option(
    "--web-precisions",
    type=CommaList(str),
    default=None,
    help="Precisions the web folder offers [default: fp32] (fp32 always; int8 needs --calibration-data).",
)
@click.option(
    "--ort-web",
    type=click.Path(file_okay=False),
    default=None,
    help="onnxruntime-web's dist folder [default: web/node_modules/onnxruntime-web/dist after `npm ci` in web/].",
)
@format_option(OutputFormat.TABLE, OutputFormat.JSON)
@one_line_errors
def main(
    fmt: str,
    bundle: str | None,
    bundle_precisions: tuple[str, ...],
    int8_targets: tuple[str, ...] | None,
    web: str | None,
    web_precisions: tuple[str, ...] | None,
    ort_web: str | None,
    **options: Any,
) -> None:
    """Export a zoo model to a simplified, verified ONNX file with a symbolic batch axis."""
    # The Triton flags share their names with TritonOptions' fields (--triton-name is ``name``).
    triton = {f.name: options.pop(f.name) for f in fields(TritonOptions)}
    triton["preferred_batch_sizes"] = triton["preferred_batch_sizes"] or ()
    config = ExportConfig(**options, triton=TritonOptions(**triton))
    if web is None and (web_precisions or ort_web):
        raise ConfigError("--web-precisions and --ort-web shape the web folder: give --web DIR too")
    if bundle is None:
        if int8_targets:
            raise ConfigError("--int8-targets is for --bundle; for one file give --int8-target")
        if web is not None:
            precisions = tuple(web_precisions or ("fp32",))
            for p in precisions:  # each precision's options as its export will run them
                replace(config, precision=p).validate()
            web_target = Deploy("web", web, WebOptions(precisions=precisions, ort_web=ort_web))
            config = replace(config, deploy=(*config.deploy, web_target))
        click.echo(run_export(config).render(fmt))
        return
    if web is not None:
        if web_precisions:
            raise ConfigError(
                "with --bundle, the web folder ships the bundle's fp32 and int8 models: give --bundle-precisions"
            )
        check_web_options(Path(web), tuple(p for p in bundle_precisions if p in WEB_PRECISIONS), ort_web)
    for flag, given in (("--output", config.output), ("--triton-repo", config.triton_repo)):
        if given:
            raise ConfigError(f"{flag} and --bundle exclude each other: the bundle names its own files")
    if config.precision != "fp32":
        raise ConfigError("with --bundle, give the precisions with --bundle-precisions, not --precision")
    if int8_targets and "int8" not in bundle_precisions:
        raise ConfigError("--int8-targets needs int8 in --bundle-precisions")
    written = write_bundle(
        config=config, folder=bundle, precisions=tuple(bundle_precisions), int8_targets=tuple(int8_targets or ())
    )
    if web is None:
        click.echo(written.render(fmt))
        return
    site = write_web(WebConfig(source=bundle, folder=web, ort_web=ort_web))
    if fmt == OutputFormat.JSON:
        click.echo(
            json.dumps({"bundle": json.loads(written.render(fmt)), "web": json.loads(site.render(fmt))}, indent=2)
        )
    else:
        click.echo(written.render(fmt) + "\n\n" + site.render(fmt))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path())
@click.option("--layers/--no-layers", default=True, show_default=True, help="Show the per-layer table.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def inspect_main(path: str, fmt: str, layers: bool) -> None:
    """What the ONNX model (or the bundle folder) at PATH is: contract, metadata, ops, size, MACs, providers."""
    click.echo(inspect_path(path, layers=layers).render(fmt))
