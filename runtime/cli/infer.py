"""``nin-infer``: classify image files, folders, lists and arrays with an exported model, streamed."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from ..bulk import InferConfig, InferReport, count_inputs, run_infer
from ..core.choices import OutputFormat, Precision, RowFormat
from ..core.errors import InputError
from .common import (
    choice,
    fallback_option,
    one_line_errors,
    provider_option,
    renamed_option,
    rerun_command,
    verify_key_option,
)

#: What ``--format`` accepts: a report on the terminal (table, json) or rows (csv, jsonl, parquet).
FORMATS = (str(OutputFormat.TABLE), str(OutputFormat.JSON), *RowFormat.values())


class ProgressLine:
    """``123/10,000 images  456.7 images/s  ETA 0:00:21`` redrawn on stderr, at most 5 times a second.

    The total is counted in a background thread (a listing, no decoding); until it is known the
    line shows the count and rate alone.
    """

    def __init__(self, config: InferConfig) -> None:
        self.total: int | None = None
        self.last = 0.0
        threading.Thread(target=self._count, args=(config,), daemon=True, name="nin-count").start()

    def _count(self, config: InferConfig) -> None:
        try:
            self.total = count_inputs(config)
        except Exception:  # the count only feeds the ETA; the run itself reports bad inputs
            self.total = None

    def __call__(self, done: int, seconds: float) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        rate = done / seconds if seconds > 0 else 0.0
        line = f"{done:,}"
        if self.total:
            line += f"/{self.total:,}"
        line += f" images  {rate:,.1f} images/s"
        if self.total and rate > 0:
            left = max(0, self.total - done) / rate
            line += f"  ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        click.echo("\r" + line.ljust(60), err=True, nl=False)

    def close(self) -> None:
        if self.last:
            click.echo("", err=True)


def _config(inputs: tuple[str, ...], fmt: str | None, output: str | None, top_k: int | None, **options: Any):
    """The run's config: rows stream to ``--output`` (or stdout for csv/jsonl); table/json are reports."""
    if output is None and fmt in RowFormat.values():
        output = "-"
    if output is not None and fmt in (OutputFormat.TABLE, OutputFormat.JSON):
        raise click.UsageError(f"--output writes rows as csv, jsonl or parquet; --format {fmt} prints a report")
    return InferConfig(inputs=inputs, output=output, fmt=fmt if output else None, top_k=top_k, **options)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option(
    "--from-list", type=click.Path(allow_dash=True), default=None, help="A file naming one input per line; - for stdin."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(allow_dash=True),
    default=None,
    help="Write one row per image to this file as the run goes (.csv, .jsonl, .parquet; - for stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="table or json: a report on stdout [default: table]; csv, jsonl, parquet: rows [default: from --output].",
)
@provider_option()
@fallback_option()
@click.option("--precision", type=choice(Precision), default=None, help="Which model of a bundle folder to run.")
@verify_key_option()
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Classes per image [default: min(5, classes) in a report, 1 in rows].",
)
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True, help="Largest batch per run.")
@renamed_option("--batch-size", "--max-batch", "max_batch", type=click.IntRange(min=1))
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Decode threads [default: cores, at most 4].")
@click.option("--resume", is_flag=True, help="Skip the inputs --output already has and append the rest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@click.option("--allow-errors", is_flag=True, help="Exit 0 even when some images could not be read.")
@click.option("--triton-url", default=None, help="Let a Triton server (e.g. http://127.0.0.1:8000) compute the logits.")
@click.option("--triton-model", default=None, help="Model name on the server [default: the model's own name].")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: run on a Ray cluster with Ray Data (needs nin-edge[ray]).",
)
@click.option("--address", default=None, help="--engine ray: the cluster (auto, ray://host:10001) [default: local].")
@click.option("--actors", type=click.IntRange(min=1), default=None, help="--engine ray: replicas [default: 1].")
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=None,
    help="--engine ray: seconds to wait for the cluster at --address [default: 10].",
)
@one_line_errors
def main(
    model: str,
    inputs: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    top_k: int | None,
    allow_errors: bool,
    engine: str,
    address: str | None,
    actors: int | None,
    connect_timeout: float | None,
    **options: Any,
) -> None:
    """Classify image files, folders (recursively), glob patterns, .npy stacks and IDX files with MODEL.

    Rows stream to --output as the run goes; a bad image is a row with its error, and the exit
    status is 1 if any failed (unless --allow-errors).
    """
    if engine != "ray" and (address is not None or actors is not None or connect_timeout is not None):
        raise click.UsageError("--address, --actors and --connect-timeout are for --engine ray")
    config = _config(inputs, fmt, output, top_k, model=model, **options)
    try:
        if engine == "ray":
            from ..ray_data import run_ray

            timeout = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
            report = run_ray(config, address=address, actors=actors or 1, **timeout)
        else:
            progress = ProgressLine(config) if sys.stderr.isatty() and config.output != "-" else None
            try:
                report = run_infer(config, progress)
            finally:
                if progress:
                    progress.close()
    except KeyboardInterrupt:
        if config.output is None or config.output == "-":
            raise
        raise KeyboardInterrupt(
            f"the rows so far are in {config.output}; go on with: {rerun_command('--resume', drop=('--overwrite',))}"
        ) from None
    _finish(report, fmt or OutputFormat.TABLE, allow_errors)


def _finish(report: InferReport, fmt: str, allow_errors: bool) -> None:
    for note in report.warnings:
        click.echo(f"warning: {note}", err=True)
    if report.output is None:
        click.echo(report.render(fmt))
    else:
        click.echo(report.summary(), err=True)
    if report.errors and not allow_errors:
        raise InputError(
            f"{report.errors:,} of {report.images:,} images failed (first: {report.first_error}); "
            "each has a row saying why; pass --allow-errors to exit 0"
        )
