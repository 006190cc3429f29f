"""``nin-serve``: serve an exported model with a real Triton Inference Server (PyTriton)."""

from __future__ import annotations

from typing import Any

import click

from ..serving.triton import ServeConfig, serve
from .common import one_line_errors, provider_option

_S = ServeConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path())
@click.option("--name", default=None, help="Model name on the server [default: the model's own name].")
@click.option("--host", default=_S.host, show_default=True, help="Address to bind; 0.0.0.0 exposes the server.")
@click.option("--http-port", type=int, default=_S.http_port, show_default=True)
@click.option("--grpc-port", type=int, default=_S.grpc_port, show_default=True)
@click.option("--metrics-port", type=int, default=_S.metrics_port, show_default=True)
@click.option("--max-batch", type=int, default=_S.max_batch, show_default=True, help="Largest batch Triton forms.")
@click.option(
    "--queue-delay-us",
    type=int,
    default=_S.queue_delay_us,
    show_default=True,
    help="How long Triton waits to fill a batch.",
)
@provider_option(default=_S.provider)
@click.option(
    "--batch-log", type=click.Path(dir_okay=False), default=None, help="Append each executed batch size to this file."
)
@one_line_errors
def main(**options: Any) -> None:
    """Serve MODEL with a real Triton Inference Server (PyTriton) until interrupted."""
    serve(ServeConfig(**options), ready=lambda message: click.echo(message, err=True))
