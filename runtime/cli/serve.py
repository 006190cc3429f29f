"""``nin-serve``: serve an exported model with a real Triton Inference Server (PyTriton), or a web folder."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from ..core.errors import ConfigError
from ..serving.triton import ServeConfig, serve
from ..serving.web import WebServeConfig, serve_web
from .common import Terminated, one_line_errors, provider_option, verify_key_option

_S = ServeConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(), required=False, default="")
@click.option(
    "--web",
    type=click.Path(),
    default=None,
    help="Serve this web folder (nin-export's web target) instead, cross-origin isolated for WebAssembly threads.",
)
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
@verify_key_option()
@click.option(
    "--client-timeout-s",
    type=int,
    default=_S.client_timeout_s,
    show_default=True,
    help="Close an HTTP client that sends nothing (request, header or body bytes) for this many seconds.",
)
@click.option(
    "--batch-log", type=click.Path(dir_okay=False), default=None, help="Append each executed batch size to this file."
)
@one_line_errors
def main(web: str | None, **options: Any) -> None:
    """Serve MODEL with a real Triton Inference Server (PyTriton), or a web folder (--web), until interrupted."""

    def say(message: str) -> None:
        click.echo(message, err=True)

    if web is not None:
        if options["model"]:
            raise ConfigError("give MODEL (Triton) or --web DIR (a web folder), not both")
        if options["verify_key"]:
            raise ConfigError("--verify-key checks a bundle MODEL served by Triton; --web serves a folder as it is")
        config = WebServeConfig(
            web=web, host=options["host"], http_port=options["http_port"], client_timeout_s=options["client_timeout_s"]
        )
        # As for Triton: SIGTERM, a supervisor's stop, is a clean exit (0); Ctrl-C exits 130 like every command.
        with contextlib.suppress(Terminated):
            serve_web(config, ready=say)
        say("stopped")
        return
    if not options["model"]:
        raise ConfigError("give the MODEL to serve, or --web DIR to serve a web folder")
    serve(ServeConfig(**options), ready=say)
