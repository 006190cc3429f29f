"""``nin-export``: a thin click layer over :func:`nin_edge.export.run_export`."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click
from nin_edge.models import list_models
from nin_edge.models.cli import epoch_line, fine_tune_options
from nin_edge.runtime.cli.common import CommaList, choice, format_option, input_size_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat, Precision
from nin_edge.runtime.core.errors import ConfigError

from .config import ExportConfig
from .inspect import inspect_path
from .pipeline import run_export
from .precision import OLD_TARGETS, RECIPES, CalibrationMethod, Fp32Layers, Int8Target, Int8Types, ReduceRange
from .qat import QatConfig, run_qat
from .steps import MAX_OPSET, MIN_OPSET
from .targets import targets
from .targets.bundle import write_bundle
from .targets.web import write_web

_DEFAULTS = ExportConfig()


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


class _ExportCommand(click.Command):
    """``nin-export``: the export's own flags, then every registered deploy target's (its module's
    ``cli_options``, in target-name order), then ``--format``: a new target needs no edit here."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        at = next(i for i, p in enumerate(params) if p.name == "fmt")
        return [*params[:at], *(o for t in targets().values() for o in t.cli_options), *params[at:]]


def int8_recipe_options(fn: Any) -> Any:
    """``--int8-target``, ``--int8-types``, ``--int8-reduce-range`` and ``--int8-fp32-layers``: the INT8
    recipe, as nin-export and nin-qat (which fine-tunes for one) both take it."""
    for option in reversed(
        [
            click.option(
                "--int8-target",
                type=_Int8TargetChoice(Int8Target.values()),
                default=_DEFAULTS.int8_target,
                show_default=True,
                help="The machine class the INT8 model is for (recorded in it): auto is this machine's (for a nin-qat "
                "checkpoint with no --int8-* option: the recipe it was fine-tuned for); "
                + "; ".join(f"{t}: {r.describe()}" for t, r in RECIPES.items())
                + ".",
            ),
            click.option(
                "--int8-types",
                type=choice(Int8Types),
                default=_DEFAULTS.int8_types,
                show_default=True,
                help="Activation and weight types [auto: the target's].",
            ),
            click.option(
                "--int8-reduce-range",
                type=choice(ReduceRange),
                default=_DEFAULTS.int8_reduce_range,
                show_default=True,
                help="7-bit weights [auto: the target's; on only for x86 without VNNI, against AVX2 saturation].",
            ),
            click.option(
                "--int8-fp32-layers",
                type=choice(Fp32Layers),
                default=_DEFAULTS.int8_fp32_layers,
                show_default=True,
                help="Layers kept FP32 [auto: the target's]: last-block is every Conv/Gemm after the last pooling, "
                "ends adds the first conv.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.command(cls=_ExportCommand, context_settings={"help_option_names": ["-h", "--help"]})
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
@int8_recipe_options
@click.option(
    "--eval-data",
    default=None,
    help="Labelled data (class folders, manifest, IDX) whose test (else val) split judges a reduced precision.",
)
@click.option("--eval-size", type=int, default=_DEFAULTS.eval_size, show_default=True)
@click.option(
    "--allow-chance",
    is_flag=True,
    help="Let --bundle and --web package a model whose held-out (or --eval-data) accuracy is not clearly above "
    "chance, or that answers one class for nearly every image (refused otherwise).",
)
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
@format_option(OutputFormat.TABLE, OutputFormat.JSON)
@one_line_errors
def main(fmt: str, **options: Any) -> None:
    """Export a zoo model to a simplified, verified ONNX file with a symbolic batch axis."""
    known = targets()
    own = {t.name: {o.name: options.pop(o.name) for o in t.cli_options if o.name} for t in known.values()}
    config = ExportConfig(**options)
    for name, target in known.items():
        config = target.from_cli(config, own[name])
    bundle = next((d for d in config.deploy if d.target == "bundle"), None)
    if bundle is None:
        replacing = " (replacing the file there)" if config.output_path.exists() else ""
        click.echo(run_export(config).render(fmt))
        if any(d.target == "web" for d in config.deploy):
            # The web folder is made from a verified ONNX file, which the export writes too: say where.
            click.echo(
                f"note: --web also wrote the ONNX model it was made from to {config.output_path}{replacing}; "
                "--output chooses the path",
                err=True,
            )
        return
    # The one cross-target rule: a --bundle is written in place of the one ONNX file (write_bundle,
    # whose report is the output), and a --web beside it is made from that bundle.
    for flag, given in (("--output", config.output), ("--triton-repo", config.triton_repo)):
        if given:
            raise ConfigError(f"{flag} and --bundle exclude each other: the bundle names its own files")
    if config.precision != "fp32":
        raise ConfigError("with --bundle, give the precisions with --bundle-precisions, not --precision")
    web = next((d for d in config.deploy if d.target == "web"), None)
    for other in config.deploy:
        if other not in (bundle, web):
            raise ConfigError(
                f"--bundle writes the bundle (and --web from it) alone: give the {other.target} target "
                "in another nin-export run"
            )
    written = write_bundle(
        config=replace(config, deploy=()),
        folder=bundle.out,
        precisions=bundle.options.precisions,
        int8_targets=bundle.options.int8_targets,
        sign_key=bundle.options.sign_key,
    )
    if web is None:
        click.echo(written.render(fmt))
        return
    site = write_web(web.options.web_config(bundle.out, web.out))
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


_Q = QatConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--weights",
    type=click.Path(),
    default="",
    help="The NiN checkpoint (nin-train's .pt) to fine-tune, or pretrained (the shipped Fashion-MNIST weights).",
)
@click.option(
    "--data",
    default="",
    help="The images it was trained on: class folders, a CSV/JSONL manifest or the Fashion-MNIST IDX folder.",
)
@int8_recipe_options
@click.option("--epochs", type=int, default=_Q.epochs, show_default=True, help="Fine-tune epochs.")
@click.option(
    "--lr", type=float, default=_Q.lr, show_default=True, help="Fine-tune learning rate (AdamW, cosine schedule)."
)
@input_size_option(default=None, help="Input side to fine-tune (and export) at [default: the checkpoint's].")
@fine_tune_options
@click.option("--output", type=click.Path(), default=_Q.output, show_default=True, help="The QAT checkpoint.")
@click.option("--overwrite", is_flag=True, default=_Q.overwrite, help="Replace an --output that is not nin-qat's.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def qat_main(fmt: str, **options: Any) -> None:
    """Fine-tune a trained NiN under the fake quantization of an INT8 recipe (quantization-aware training,
    docs/qat.md), so that nin-export --precision int8 of the --output loses less than of the original."""
    click.echo(run_qat(QatConfig(**options), on_epoch=epoch_line).render(fmt))
