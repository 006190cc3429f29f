"""Which INT8 layout and which INT8 recipe suit this CPU.

``python -m nin_edge.benchmarks.int8_formats`` quantizes one FP32 export four ways (QDQ or
QOperator, U8S8 or S8S8) with the same calibration images, then times each (and FP32) through
``Classifier`` in interleaved rounds, so slow drift of the machine hits every variant alike.

``--recipes`` compares INT8 recipes instead (types, ``reduce_range``, layers kept FP32; see
``nin_edge.export.precision.RECIPES``) on the shipped weights: top-1 agreement with FP32 and
accuracy on labelled test images, and batch-32 speed against FP32 in interleaved rounds. The
default recipe of each CPU class follows these results.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnx
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.calibration import CalibrationSet, load_images
from nin_edge.export.inspect import layer_table
from nin_edge.export.precision import COMPUTE_OPS, choose_recipe, quantize_int8
from nin_edge.export.timing import measure_interleaved, summarize
from nin_edge.models import model_card
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.common import CommaList, format_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.cpu import cpu_model
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.report import Report, format_table
from nin_edge.runtime.int8 import cpu_class

VARIANTS = {
    "QDQ U8S8": ("qdq", "u8s8"),
    "QDQ S8S8": ("qdq", "s8s8"),
    "QOperator U8S8": ("qoperator", "u8s8"),
    "QOperator S8S8": ("qoperator", "s8s8"),
}
#: Recipes ``--recipes`` compares: types, reduce_range, layers kept FP32.
RECIPE_VARIANTS = {
    "U8S8": ("u8s8", "off", "none"),
    "U8S8 reduce_range": ("u8s8", "on", "none"),
    "U8S8 + last block FP32": ("u8s8", "off", "last-block"),
    "U8S8 reduce_range + last block FP32": ("u8s8", "on", "last-block"),
    "U8S8 + first conv and last block FP32": ("u8s8", "off", "ends"),
    "U8S8 reduce_range + first conv and last block FP32": ("u8s8", "on", "ends"),
    "U8U8": ("u8u8", "off", "none"),
    "S8S8": ("s8s8", "off", "none"),
    "S8S8 + last block FP32": ("s8s8", "off", "last-block"),
}


@dataclass(frozen=True)
class FormatReport(Report):
    """Median latency (ms) per variant and batch size (and, for recipes, agreement and accuracy)."""

    model: str
    calibration: str
    rounds: int
    results: tuple[dict, ...]
    machine: str = ""
    evaluation: str = ""

    def rows(self) -> list[dict]:
        return list(self.results)

    def to_table(self) -> str:
        head = f"{self.model}, calibration: {self.calibration}, {self.rounds} rounds"
        head += f"\nevaluation: {self.evaluation}" if self.evaluation else ""
        head += f"\nmachine: {self.machine}" if self.machine else ""
        return head + "\n" + format_table(self.rows())


def _fp32_model(folder: Path, model: str, weights: str | None, input_size: int, pretrained: bool) -> Path:
    """The verified FP32 export every variant is made from."""
    fp32 = folder / "fp32.onnx"
    run_export(
        ExportConfig(
            model=model,
            weights=weights,
            random_init=weights is None and not pretrained,
            output=str(fp32),
            input_size=input_size,
            check_batch_sizes=(1,),
        )
    )
    return fp32


def _images(model: str, source: str, size: int, limit: int, split: str) -> CalibrationSet:
    """Images of ``source`` prepared as ``model``'s card says (channels, preprocessing)."""
    card = model_card(model)
    return load_images(source, size=size, channels=card.in_channels, limit=limit, split=split, pre=card.preprocessing)


def _speed_rows(clfs: Mapping[str, Classifier], batch: int, rounds: int, runs: int) -> dict[str, dict]:
    """p50 ms of each model at ``batch`` and its speed-up over FP32, timed in interleaved rounds."""
    x = np.random.default_rng(0).random((batch, *clfs["FP32"].input_shape), dtype=np.float32)
    fns: dict[str, Callable[[], object]] = {name: functools.partial(clf.logits, x) for name, clf in clfs.items()}
    times = measure_interleaved(fns, rounds=rounds, runs=runs, pause=0.1)
    fp32_ms = summarize(times["FP32"]).p50_ms
    return {
        name: {"p50_ms": (ms := summarize(values).p50_ms), "speedup_vs_fp32": fp32_ms / ms}
        for name, values in times.items()
    }


def compare_formats(
    *,
    model: str = "nin",
    weights: str | None = None,
    calibration_data: str = "synthetic",
    batch_sizes=(1, 8, 32),
    rounds: int = 5,
    runs: int = 5,
    calibration_size: int = 200,
    input_size: int = 224,
) -> FormatReport:
    """Quantize ``model`` in each layout and time them all against FP32."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = _fp32_model(Path(tmp), model, weights, input_size, pretrained=False)
        calib = _images(model, calibration_data, input_size, calibration_size, "train")
        paths = {"FP32": fp32}
        for name, (fmt, types) in VARIANTS.items():
            paths[name] = Path(tmp) / f"{fmt}-{types}.onnx"
            recipe = choose_recipe(types=types, fp32_layers="none")
            quantize_int8(fp32_path=fp32, output=paths[name], calibration=calib, quant_format=fmt, recipe=recipe)
        clfs = {name: Classifier(p, "cpu", max_batch=max(batch_sizes)) for name, p in paths.items()}
        rows = []
        for batch in batch_sizes:
            for name, speed in _speed_rows(clfs, batch, rounds, runs).items():
                rows.append({"batch_size": batch, "variant": name, **speed})
    return FormatReport(model=model, calibration=calib.source, rounds=rounds, results=tuple(rows))


def compare_recipes(
    *,
    model: str = "nin",
    weights: str | None = None,
    calibration_data: str,
    eval_data: str,
    variants: tuple[str, ...] = tuple(RECIPE_VARIANTS),
    batch: int = 32,
    rounds: int = 7,
    runs: int = 5,
    calibration_size: int = 300,
    eval_size: int = 1000,
    input_size: int = 112,
) -> FormatReport:
    """Each recipe of ``variants`` on the shipped weights (or ``weights``): agreement with FP32 and
    accuracy on ``eval_size`` labelled test images, p50 at ``batch`` against FP32, interleaved."""
    unknown = [v for v in variants if v not in RECIPE_VARIANTS]
    if unknown:
        raise ConfigError(f"unknown recipe {unknown[0]!r}; known: {'; '.join(RECIPE_VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = _fp32_model(Path(tmp), model, weights, input_size, pretrained=True)
        calib = _images(model, calibration_data, input_size, calibration_size, "train")
        test = _images(model, eval_data, input_size, eval_size, "test")
        paths = {"FP32": fp32}
        for i, name in enumerate(variants):
            types, reduce_range, layers = RECIPE_VARIANTS[name]
            recipe = choose_recipe(types=types, reduce_range=reduce_range, fp32_layers=layers)
            paths[name] = Path(tmp) / f"recipe-{i}.onnx"
            quantize_int8(fp32_path=fp32, output=paths[name], calibration=calib, recipe=recipe)
        clfs = {name: Classifier(p, "cpu", max_batch=256) for name, p in paths.items()}
        reference = clfs["FP32"].logits(test.images).argmax(1)
        speed = _speed_rows(clfs, batch, rounds, runs)
        rows = []
        for name, clf in clfs.items():
            top1 = clf.logits(test.images).argmax(1)
            types, reduce_range, layers = RECIPE_VARIANTS.get(name, ("fp32", "-", "all"))
            rows.append(
                {
                    "variant": name,
                    "types": types,
                    "reduce_range": reduce_range,
                    "fp32_layers": layers,
                    "agreement": float(np.mean(top1 == reference)),
                    "accuracy": float(np.mean(top1 == test.labels)),
                    f"p50_ms_batch{batch}": speed[name]["p50_ms"],
                    "speedup_vs_fp32": speed[name]["speedup_vs_fp32"],
                }
            )
    return FormatReport(
        model=model,
        calibration=calib.source,
        rounds=rounds,
        results=tuple(rows),
        machine=f"{cpu_model() or 'unknown CPU'}; INT8 class {cpu_class()}",
        evaluation=test.source,
    )


def layer_sensitivity(
    *,
    model: str = "nin",
    weights: str | None = None,
    calibration_data: str,
    eval_data: str,
    reduce_range: str = "off",
    calibration_size: int = 300,
    eval_size: int = 1000,
    input_size: int = 112,
) -> FormatReport:
    """A sensitivity pass: U8S8 with one compute layer at a time kept in FP32, each layer's effect on
    top-1 agreement with FP32 and accuracy (the first row quantizes every layer)."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = _fp32_model(Path(tmp), model, weights, input_size, pretrained=True)
        calib = _images(model, calibration_data, input_size, calibration_size, "train")
        test = _images(model, eval_data, input_size, eval_size, "test")
        reference = Classifier(fp32, "cpu", max_batch=256).logits(test.images).argmax(1)
        graph = onnx.load(str(fp32))
        macs = {layer.node: layer.macs for layer in layer_table(graph)}
        total = sum(macs.values())
        recipe = choose_recipe(types="u8s8", reduce_range=reduce_range, fp32_layers="none")
        rows = []
        for node in [None, *(n.name for n in graph.graph.node if n.op_type in COMPUTE_OPS)]:
            out = Path(tmp) / "layer.onnx"
            keep = (node,) if node else ()
            quantize_int8(fp32_path=fp32, output=out, calibration=calib, recipe=recipe, keep_fp32=keep)
            top1 = Classifier(out, "cpu", max_batch=256).logits(test.images).argmax(1)
            rows.append(
                {
                    "fp32_layer": node or "(none: all INT8)",
                    "mac_share": macs.get(node, 0) / total if node else 0.0,
                    "agreement": float(np.mean(top1 == reference)),
                    "accuracy": float(np.mean(top1 == test.labels)),
                }
            )
    return FormatReport(
        model=model,
        calibration=f"{calib.source}; U8S8, reduce_range {reduce_range}",
        rounds=0,
        results=tuple(rows),
        machine=f"{cpu_model() or 'unknown CPU'}; INT8 class {cpu_class()}",
        evaluation=test.source,
    )


@click.command()
@click.option("--model", default="nin", show_default=True)
@click.option(
    "--weights", default=None, help="Checkpoint to quantize [default: random init; with --recipes the shipped weights]."
)
@click.option("--calibration-data", default="synthetic", show_default=True)
@click.option("--batch-sizes", type=CommaList(int, positive=True), default="1,8,32", show_default=True)
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--recipes", is_flag=True, help="Compare INT8 recipes (agreement, accuracy, batch-32 speed) instead.")
@click.option(
    "--sensitivity", is_flag=True, help="With --recipes: one layer at a time in FP32, its effect on agreement."
)
@click.option("--variants", type=CommaList(str), default=None, help="With --recipes: which recipes [default: all].")
@click.option("--eval-data", default=None, help="With --recipes: labelled Fashion-MNIST folder (its test split).")
@click.option("--input-size", type=int, default=None, help="[default: 224; 112 with --recipes, the shipped size]")
@click.option("--calibration-size", type=int, default=None, help="[default: 200; 300 with --recipes, as nin-export]")
@click.option("--eval-size", type=int, default=1000, show_default=True, help="With --recipes: test images compared.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.MARKDOWN)
@one_line_errors
def main(
    fmt: str,
    recipes: bool,
    sensitivity: bool,
    variants: tuple[str, ...] | None,
    eval_data: str | None,
    eval_size: int,
    **options: Any,
) -> None:
    """Time QDQ/QOperator x U8S8/S8S8 INT8 layouts (or, with --recipes, INT8 recipes) against FP32 on this CPU."""
    if options["input_size"] is None:
        options["input_size"] = 112 if recipes else 224
    if options["calibration_size"] is None:
        options["calibration_size"] = 300 if recipes else 200
    if not recipes:
        click.echo(compare_formats(**options).render(fmt))
        return
    if eval_data is None:
        raise click.UsageError("--recipes needs --eval-data (labelled test images)")
    batch_sizes = options.pop("batch_sizes")
    if sensitivity:
        del options["rounds"]
        click.echo(layer_sensitivity(**options, eval_data=eval_data, eval_size=eval_size).render(fmt))
        return
    report = compare_recipes(
        **options,
        eval_data=eval_data,
        eval_size=eval_size,
        variants=variants or tuple(RECIPE_VARIANTS),
        batch=max(batch_sizes),
    )
    click.echo(report.render(fmt))


if __name__ == "__main__":
    main()
