"""``nin-bench``: a thin click layer over :func:`nin_edge.benchmarks.run_bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from nin_edge.runtime.cli.common import (
    CommaList,
    choice,
    fallback_option,
    format_option,
    input_size_option,
    one_line_errors,
    provider_option,
    renamed_option,
)
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.files import atomic_output, check_writable
from nin_edge.runtime.providers import CudnnSearch

from .bench import BenchConfig, run_bench
from .bench_plot import plot_report
from .profile import plot_profile, run_profile

_B = BenchConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--models", type=CommaList(str), default=",".join(_B.models), show_default=True, help="Registered models."
)
@provider_option(default="cpu", multiple=True, help="cpu, cuda, tensorrt or openvino")
@click.option(
    "--batch-sizes", type=CommaList(int, positive=True), default=",".join(map(str, _B.batch_sizes)), show_default=True
)
@click.option("--warmup", type=int, default=_B.warmup, show_default=True, help="Untimed runs per configuration.")
@click.option(
    "--iterations", type=int, default=_B.iterations, show_default=True, help="At least this many timed runs..."
)
@click.option(
    "--duration", type=float, default=_B.duration, show_default=True, help="...and at least this many seconds."
)
@click.option("--precision", type=CommaList(str), default=",".join(_B.precision), show_default=True)
@click.option(
    "--torch/--no-torch",
    default=_B.torch,
    show_default=True,
    help="Add PyTorch eager rows on the same inputs (on the GPU when a GPU provider is measured).",
)
@click.option("--torch-compile", is_flag=True, help="Add torch.compile rows (compiled once per batch size, not timed).")
@click.option("--model-path", multiple=True, type=click.Path(), help="Any ONNX classifier file; repeatable.")
@input_size_option(default=_B.input_size)
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores].")
@fallback_option()
@click.option(
    "--io-binding/--no-io-binding", default=_B.io_binding, show_default=True, help="Keep GPU inputs on the device."
)
@click.option(
    "--calibration-data",
    default=_B.calibration_data,
    show_default=True,
    help="Calibration images for INT8 rows (see nin-export); the report names it.",
)
@click.option(
    "--cudnn-conv-algo-search",
    type=choice(CudnnSearch),
    default=_B.cudnn_conv_algo_search,
    show_default=True,
    help="How the CUDA provider picks convolution kernels (EXHAUSTIVE times them once per shape).",
)
@click.option("--tensorrt-fp16", is_flag=True, help="Let TensorRT build FP16 engines (rows say fp32+tensorrt-fp16).")
@renamed_option("--trt-fp16", "--tensorrt-fp16", "tensorrt_fp16", flag=True)
@click.option(
    "--peers",
    type=CommaList(str),
    default=None,
    help="Also time these peer runtimes on the same inputs: openvino, executorch, litert (each its own extra, "
    "e.g. pip install 'nin-edge[peer-openvino]').",
)
@click.option(
    "--pause", type=float, default=_B.pause, show_default=True, help="Seconds of rest between configurations."
)
@click.option(
    "--cache-dir",
    type=click.Path(),
    default=None,
    help="Where exported models are cached [default: ~/.cache/nin-edge].",
)
@click.option("--output", type=click.Path(), default=None, help="Also write the result in --format to this file.")
@click.option("--plot", type=click.Path(), default=None, help="Draw latency and size charts into this PNG.")
@click.option(
    "--profile",
    is_flag=True,
    help="Instead of timing whole runs, profile each configuration node by node (onnxruntime's profiler).",
)
@click.option("--top", type=int, default=10, show_default=True, help="--profile: slowest nodes shown per profile.")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV, OutputFormat.MARKDOWN)
@one_line_errors
def main(
    fmt: str,
    output: str | None,
    plot: str | None,
    provider: tuple[str, ...],
    profile: bool,
    top: int,
    **options: Any,
) -> None:
    """Latency, throughput, parameters and MACs of NiN against AlexNet and VGG-11."""
    for path in (output, plot):
        if path:
            check_writable(path)
    config = BenchConfig(provider=provider, **{**options, "peers": options["peers"] or ()})
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if profile:
        profiled = run_profile(config, top=top, runs=config.iterations, progress=say)
        text = profiled.render(fmt)
    else:
        report = run_bench(config, progress=say)
        text = report.render(fmt)
    click.echo(text)
    if output:
        with atomic_output(output) as tmp:
            Path(tmp).write_text(text + "\n")
    if plot:
        if profile:
            plot_profile(profiled, Path(plot))
        else:
            plot_report(report, Path(plot))
