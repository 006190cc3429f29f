"""``nin-train``, ``nin-eval`` and ``nin-prune``: thin click layers over :mod:`nin_edge.models.train`,
``evaluate`` and ``prune``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from nin_edge.runtime.cli.common import (
    PROVIDER_HELP,
    choice,
    format_option,
    input_size_option,
    one_line_errors,
    provider_option,
    renamed_option,
    rerun_command,
)
from nin_edge.runtime.core.choices import OutputFormat

from .evaluate import EvalConfig, EvalSplit, run_eval
from .fine_tune import FineTune
from .prune import Importance, PruneConfig, run_prune
from .registry import list_models
from .train import train
from .train_checkpoint import EpochStats
from .train_config import Augment, Balance, Head, Normalize, Optimizer, Schedule, TrainConfig

_T = TrainConfig()
_E = EvalConfig()
_P = PruneConfig()
_F = FineTune(data="", epochs=1)
WORKERS_HELP = "Processes decoding image files."


class _ProgressBar:
    """A one-line progress bar on stderr, redrawn in place each step on a terminal.

    Elsewhere (CI logs, files, pipes) carriage-return frames would pile up as thousands of lines,
    so only the finished count is written, once per epoch.
    """

    def __init__(self) -> None:
        self.open = False

    def __call__(self, step: int, steps: int, loss: float) -> None:
        stream = sys.stderr
        if not stream.isatty():
            if step >= steps:
                stream.write(f"  {step}/{steps} steps, loss {loss:.4f}\n")
            return
        width = 30
        done = int(width * step / steps)
        stream.write(f"\r  [{'#' * done}{'.' * (width - done)}] {step}/{steps} loss {loss:.4f}")
        self.open = step < steps
        if not self.open:
            stream.write("\n")
        stream.flush()

    def scan(self, done: int, total: int) -> None:
        """Progress of the up-front check of the data's files (on a terminal only; once elsewhere)."""
        stream = sys.stderr
        if not stream.isatty():
            if done >= total:
                stream.write(f"checked {total} image files\n")
            return
        width = 30
        filled = int(width * done / max(1, total))
        stream.write(f"\r  checking images [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        self.open = done < total
        if not self.open:
            stream.write("\n")
        stream.flush()

    def close(self) -> None:
        """End a bar cut short, so that an error message starts on its own line."""
        if self.open:
            sys.stderr.write("\n")
            self.open = False


DATA_HELP = (
    "A folder with one subfolder per class (optionally under train/, val/, test/), a CSV or JSONL "
    "manifest (path,label[,split]; paths relative to it), or a folder with the Fashion-MNIST IDX files."
)


def data_options(fn: Any) -> Any:
    """``--data`` (``--data-dir``: the old spelling, hidden, with a warning) and the options of its split."""
    for option in reversed(
        [
            click.option("--data", default="", help=DATA_HELP),
            renamed_option("--data-dir", "--data", "data", type=str),
            click.option(
                "--val-fraction",
                type=float,
                default=_T.val_fraction,
                show_default=True,
                help="Share of each class held out for validation when the data has no val/ split (seeded).",
            ),
            click.option(
                "--strict", is_flag=True, help="Refuse unreadable images and images in two classes (default: skip)."
            ),
        ]
    ):
        fn = option(fn)
    return fn


def epoch_line(s: EpochStats) -> None:
    click.echo(
        f"epoch {s.epoch}: train loss {s.train_loss:.4f}, train acc {s.train_acc:.4f}, "
        f"held-out acc {s.held_out_acc:.4f}, {s.examples_per_s:.0f} examples/s ({s.seconds:.0f} s, lr {s.lr:.3g})",
        err=True,
    )


def limit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--train-limit and --test-limit, as nin-train and the commands that fine-tune through it (nin-prune,
    nin-qat) take them."""
    fn = click.option("--test-limit", type=int, default=None, help="Use only the first N held-out images.")(fn)
    return click.option("--train-limit", type=int, default=None, help="Use only the first N training images.")(fn)


def speed_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--amp and --channels-last, nin-train's, for nin-train and the commands that fine-tune through it."""
    fn = click.option("--channels-last/--no-channels-last", default=_T.channels_last, show_default=True)(fn)
    return click.option(
        "--amp/--no-amp",
        default=_T.amp,
        show_default=True,
        help="Mixed precision: float16 on CUDA, bfloat16 on CPUs with bf16 instructions (avx512_bf16, amx_bf16).",
    )(fn)


def fine_tune_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--batch-size, --seed, --device, --workers, --amp, --channels-last, --train-limit and --test-limit of a
    command that fine-tunes through nin-train (:class:`~nin_edge.models.fine_tune.FineTune`: nin-prune, nin-qat)."""
    fn = limit_options(fn)
    fn = speed_options(fn)
    fn = click.option("--workers", type=int, default=_F.workers, show_default=True, help=WORKERS_HELP)(fn)
    fn = click.option("--device", default=_F.device, show_default=True, help="auto, cpu or cuda[:N].")(fn)
    fn = click.option("--seed", type=int, default=_F.seed, show_default=True)(fn)
    return click.option("--batch-size", type=int, default=None, help="Fine-tune batch [default: nin-train's].")(fn)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@data_options
@click.option(
    "--channels", type=click.Choice(["1", "3"]), default=None, help="1 (grey) or 3 (RGB) [default: from the data]."
)
@click.option("--model", default=_T.model, show_default=True, help=f"One of {', '.join(list_models())}.")
@click.option(
    "--epochs",
    type=int,
    default=_T.epochs,
    help="[default: auto: 10 (the book's) from scratch, 15 with --init-from; a resumed run's own count].",
)
@click.option(
    "--batch-size",
    type=int,
    default=_T.batch_size,
    help="Global batch (split across ranks) [default: 128; for fewer than 1,024 training images the power of two "
    "from 16 that gives about 8 steps per epoch].",
)
@click.option(
    "--lr", type=float, default=_T.lr, help="Learning rate [default: 0.1 (the book's); 0.0005 with --init-from]."
)
@input_size_option(default=_T.input_size)
@click.option(
    "--optimizer",
    type=choice(Optimizer),
    default=_T.optimizer,
    show_default=True,
    help="auto: sgd (the book's) from scratch, adamw with --init-from.",
)
@click.option("--momentum", type=float, default=_T.momentum, show_default=True)
@click.option("--weight-decay", type=float, default=_T.weight_decay, show_default=True)
@click.option(
    "--schedule",
    type=choice(Schedule),
    default=_T.schedule,
    show_default=True,
    help="auto: constant (the book's) from scratch, cosine with --init-from.",
)
@click.option("--warmup-epochs", type=float, default=_T.warmup_epochs, show_default=True)
@click.option(
    "--backbone-lr-scale",
    type=float,
    default=_T.backbone_lr_scale,
    help="With --init-from: the loaded layers before the last block learn at lr times this, the new last block at "
    "lr [default: auto: 0.5 with a new last block and 8 or more steps an epoch, else 1].",
)
@click.option(
    "--freeze-epochs",
    type=int,
    default=_T.freeze_epochs,
    help="With --init-from: for this many first epochs only the new last block learns (the loaded layers wait) "
    "[default: auto: a fifth of --epochs with a new last block and 8 or more steps an epoch, else 0].",
)
@click.option(
    "--flip/--no-flip", default=None, help="Random horizontal flips [default: on for image files, off for IDX]."
)
@click.option(
    "--augment",
    type=choice(Augment),
    default=_T.augment,
    show_default=True,
    help="Random resized crops or shifts (auto: crop for image files, none for IDX, the book's recipe).",
)
@click.option(
    "--balance",
    type=choice(Balance),
    default=_T.balance,
    show_default=True,
    help="Imbalanced classes: inverse-frequency loss weights, or a class-balanced sampler.",
)
@click.option(
    "--normalize",
    type=choice(Normalize),
    default=_T.normalize,
    show_default=True,
    help="Input mean/std: the model card's, or computed from the training images (recorded in the checkpoint).",
)
@click.option(
    "--workers", type=int, default=_T.workers, show_default=True, help="DataLoader processes decoding image files."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep each decoded, resized image here as a tensor, for later epochs (small images: saves decoding).",
)
@click.option(
    "--patience",
    type=int,
    default=_T.patience,
    show_default=True,
    help="Stop when held-out accuracy has not improved for N epochs (0: never).",
)
@click.option("--seed", type=int, default=_T.seed, show_default=True)
@click.option("--device", default=_T.device, show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--output", type=click.Path(), default=_T.output, show_default=True, help="Checkpoint, written every epoch."
)
@click.option("--resume", type=click.Path(), default=None, help="Continue a nin-train checkpoint exactly.")
@click.option(
    "--init-from",
    default=None,
    help="Fine-tune from these weights ('pretrained': the shipped Fashion-MNIST NiN); other classes or another head "
    "re-initialise the last block, 3 channels adapt the first convolution; --optimizer/--lr/--schedule auto then "
    "mean AdamW at 5e-4, cosine.",
)
@click.option(
    "--head",
    type=choice(Head),
    default=_T.head,
    show_default=True,
    help="NiN's last block: book (D2L's, hidden layers C units wide) or wide (hidden at least 16, raw logits: "
    "learns 2 or 3 classes); auto: book for the Fashion-MNIST IDX files, else wide.",
)
@speed_options
@limit_options
@click.option(
    "--plot/--no-plot", default=_T.plot, show_default=True, help="Write the curves as a PNG beside the checkpoint."
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=_T.overwrite,
    help="Replace an existing --output (and its .best.pt and .png) that is not nin-train's.",
)
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def train_main(fmt: str, channels: str | None, **options: Any) -> None:
    """Train a zoo model on your images or Fashion-MNIST (D2L's recipe by default); torchrun-aware.

    The best checkpoint by held-out accuracy is kept beside --output as NAME.best.pt.
    """
    bar = _ProgressBar()
    started = time.time()
    try:
        result = train(
            TrainConfig(channels=int(channels) if channels else None, **options),
            on_step=bar,
            on_epoch=epoch_line,
            on_note=lambda text: click.echo(text, err=True),
            on_scan=bar.scan,
        )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_resume_hint(options["output"], options["resume"], started)) from None
    finally:
        bar.close()
    if result.rank == 0:
        click.echo(result.render(fmt))


def _resume_hint(output: str, resumed: str | None, started: float) -> str:
    """What an interrupted run left: the command that resumes it from its checkpoint, if it wrote one."""
    checkpoint = Path(output)
    if not checkpoint.is_file() or checkpoint.stat().st_mtime < started:
        if resumed:
            return f"no epoch finished in this run; the same command goes on from '{resumed}' again"
        return f"no epoch finished, so there is no checkpoint to resume from ('{output}' was not written)"
    # --resume refuses --init-from and --head (they only start a run): the command that resumes leaves them out.
    again = rerun_command("--resume", output, drop_with_value=("--init-from", "--head"))
    return f"'{output}' holds the last finished epoch; go on with: {again}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@data_options
@click.option(
    "--split",
    type=choice(EvalSplit),
    default=_E.split,
    show_default=True,
    help="Images to score (auto: test/ if the data has one, else the validation split the checkpoint recorded).",
)
@click.option("--seed", type=int, default=_E.seed, show_default=True, help="Seed of the validation split.")
@click.option("--workers", type=int, default=_E.workers, show_default=True, help=WORKERS_HELP)
@click.option("--weights", type=click.Path(), default=None, help="Checkpoint to evaluate with PyTorch.")
@click.option("--onnx", type=click.Path(), default=None, help="Exported model to evaluate through nin_edge.runtime.")
@provider_option(default=_E.provider, help="Provider for --onnx: " + PROVIDER_HELP)
@click.option("--model", default=None, help="Model of a bare state_dict [default: from the checkpoint, else nin].")
@input_size_option(default=None, help="Input size for --weights [default: the checkpoint's].")
@click.option("--max-batch", type=int, default=_E.max_batch, show_default=True, help="Largest batch per run.")
@renamed_option("--batch-size", "--max-batch", "max_batch", type=int)
@click.option("--limit", type=int, default=None, help="Use only the first N images of the split.")
@click.option("--confusion-png", type=click.Path(), default=None, help="Also draw the confusion matrix here.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def eval_main(fmt: str, **options: Any) -> None:
    """Accuracy, per-class precision and recall and the confusion matrix (with the class names) of a
    checkpoint and/or its ONNX export on your images or Fashion-MNIST."""
    bar = _ProgressBar()
    try:
        result = run_eval(EvalConfig(**options), on_scan=bar.scan)
    finally:
        bar.close()
    click.echo(result.render(fmt))
    if fmt != OutputFormat.TABLE:  # the table shows its notes; JSON and CSV readers still see the warning
        for note in result.notes:
            if note.startswith("warning:"):
                click.echo(note, err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--weights",
    type=click.Path(),
    default="",
    help="The NiN checkpoint (nin-train's .pt) to prune, or pretrained (the shipped Fashion-MNIST weights).",
)
@click.option("--data", default="", help="The images it was trained on, for the fine-tune epochs: " + DATA_HELP)
@click.option(
    "--target-macs",
    type=float,
    default=_P.target_macs,
    show_default=True,
    help="MACs of the pruned model as a fraction of the given one's (0 to 1).",
)
@click.option("--steps", type=int, default=_P.steps, show_default=True, help="Prune + fine-tune rounds to get there.")
@click.option(
    "--epochs-per-step",
    type=int,
    default=_P.epochs_per_step,
    show_default=True,
    help="nin-train epochs after each step (0: prune only).",
)
@click.option(
    "--importance",
    type=choice(Importance),
    default=_P.importance,
    show_default=True,
    help="Channel score: L2 or L1 norm of the weights the channel takes out.",
)
@click.option(
    "--round-to",
    type=int,
    default=_P.round_to,
    show_default=True,
    help="Each block's width is a multiple of this (INT8 and FP32 kernels run whole groups of channels; 1: any).",
)
@click.option("--output", type=click.Path(), default=_P.output, show_default=True, help="The pruned checkpoint.")
@click.option("--resume", type=click.Path(), default=None, help="Go on from the last step nin-prune wrote here.")
@click.option("--lr", type=float, default=None, help="Fine-tune learning rate [default: nin-train's with --init-from].")
@fine_tune_options
@click.option("--overwrite", is_flag=True, default=_P.overwrite, help="Replace an --output that is not nin-prune's.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def prune_main(fmt: str, **options: Any) -> None:
    """Prune whole channels of a trained NiN to a MAC budget, fine-tuning after each step (docs/pruning.md).

    --output is an ordinary checkpoint after every step: nin-export, nin-eval and nin-train --init-from take it.
    """
    click.echo(run_prune(PruneConfig(**options), on_epoch=epoch_line).render(fmt))
