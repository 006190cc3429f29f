"""PTQ against QAT (issue 32): the INT8 model nin-export makes of a checkpoint, of the same checkpoint after
nin-qat, and of the same fine-tune without fake quantization (the control: what the fine-tune alone
changes), judged on the same held-out images at each input size.

Every variant goes through the library calls the commands make (``run_qat``, ``run_export``) with the same
INT8 recipe, calibration images (the first ``--calibration-size`` training images) and evaluation images (the
first ``--eval-size`` test images); the agreement gate is off (``min_agreement`` 0) so that every figure is
measured. One JSON file per run under ``--out``. For a pruned model give ``--weights pruned.pt``.

Run ``python -m nin_edge.benchmarks.qat --help``. The fine-tunes take minutes on two CPU cores.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.precision import choose_recipe
from nin_edge.export.qat import DEFAULT_LR, QatConfig, run_qat
from nin_edge.runtime.cli.common import CommaList
from nin_edge.runtime.core.cpu import cpu_model
from nin_edge.runtime.core.files import atomic_output

#: The variants measured at each input size, in the order they run.
VARIANTS = ("ptq", "finetune+ptq", "qat")


def _int8(weights: str | None, size: int, config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Export ``weights`` (None: the shipped ones) to INT8 at ``size`` and return what its comparison measured."""
    summary = run_export(
        ExportConfig(
            weights=weights,
            input_size=size,
            precision="int8",
            calibration_data=config["data"],
            calibration_size=config["calibration_size"],
            eval_data=config["data"],
            eval_size=config["eval_size"],
            int8_target=config["int8_target"],
            min_agreement=0.0,
            output=str(out),
        )
    )
    report = summary.reduced
    assert report is not None  # precision int8 always compares
    return {
        "fp32_accuracy": report.accuracy_fp32,
        "int8_accuracy": report.accuracy_reduced,
        "drop_points": report.accuracy_drop_points,
        "agreement": report.top1_agreement,
        "images": report.images,
        "recipe": report.recipe,
        "gate_arithmetic": report.gate_arithmetic,
    }


def compare(config: dict[str, Any], size: int, scratch: Path) -> Iterator[dict[str, Any]]:
    """The three variants at ``size``: what each INT8 model measured, one row per variant as it finishes."""
    source = None if config["weights"] == "pretrained" else config["weights"]
    for variant in VARIANTS:
        start = time.perf_counter()
        weights = source
        history: list[dict[str, Any]] = []
        if variant != "ptq":
            tuned = scratch / f"{variant}-{size}.pt"
            report = run_qat(
                QatConfig(
                    weights=config["weights"],
                    data=config["data"],
                    int8_target=config["int8_target"],
                    epochs=config["epochs"],
                    lr=config["lr"],
                    input_size=size,
                    train_limit=config["train_limit"],
                    test_limit=config["test_limit"],
                    workers=0,
                    output=str(tuned),
                ),
                fake_quant=variant == "qat",
            )
            weights = str(tuned)
            history = [{"held_out_acc": e.held_out_acc, "seconds": e.seconds} for e in report.epochs]
        row = {"variant": variant, "input_size": size, **_int8(weights, size, config, scratch / f"{variant}.onnx")}
        row.update(fine_tune=history, seconds=round(time.perf_counter() - start, 1))
        click.echo(
            f"{size} {variant:13s} fp32 {row['fp32_accuracy']:.4f} int8 {row['int8_accuracy']:.4f} "
            f"agreement {row['agreement']:.4f} ({row['seconds']} s)"
        )
        yield row


@click.command()
@click.option("--weights", default="pretrained", show_default=True, help="NiN checkpoint, or pretrained.")
@click.option("--data", default="/work/shared/data/fashion-mnist", show_default=True, help="Its training data.")
@click.option("--input-sizes", type=CommaList(int, positive=True), default="112,224", show_default=True)
@click.option("--int8-target", default="auto", show_default=True, help="The recipe's machine class (nin-export's).")
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=DEFAULT_LR, show_default=True)
@click.option("--train-limit", type=int, default=6000, show_default=True, help="Fine-tune on the first N images.")
@click.option("--test-limit", type=int, default=500, show_default=True, help="Scored after each fine-tune epoch.")
@click.option("--calibration-size", type=int, default=300, show_default=True)
@click.option("--eval-size", type=int, default=2000, show_default=True, help="The first N test images judge.")
@click.option("--out", default=f"benchmarks/results/{time.strftime('%Y-%m-%d')}-cpu/qat", show_default=True)
def main(**config: Any) -> None:
    """PTQ, fine-tune + PTQ and QAT at each input size; writes one JSON file into --out."""
    recipe = choose_recipe(config["int8_target"])
    sizes = config.pop("input_sizes")
    out = Path(config.pop("out"))
    out.mkdir(parents=True, exist_ok=True)
    name = Path(config["weights"]).stem
    path = out / f"{name}-{recipe.target}-{'-'.join(map(str, sizes))}-{config['train_limit']}.json"
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "recipe": f"{recipe.target}: {recipe.describe()}",
        **config,
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="nin-qat-bench-") as tmp:
        for size in sizes:
            for row in compare(config, size, Path(tmp)):
                result["rows"].append(row)
                with atomic_output(path) as tmp_file:  # rewritten after each row: what is measured survives a stop
                    tmp_file.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
