"""Serving a model through a real Triton Inference Server (PyTriton) and calling it (tritonclient).

The server side binds :class:`~nin_edge.runtime.Classifier` as the model's inference function, so
Triton's dynamic batcher groups concurrent requests and the runtime runs each batch. Nothing here
is imported by ``nin_edge.runtime`` itself; it needs the ``serve`` extra.
"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classifier import Classifier, check_top_k, top_predictions
from ..core.errors import ConfigError, NinEdgeError

SERVE_EXTRA = "pip install 'nin-edge[serve]'"


@dataclass(frozen=True)
class ServeConfig:
    """Options of ``nin-serve``; each field is also its flag."""

    model: str = ""
    name: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 16
    queue_delay_us: int = 2000
    provider: str = "auto"
    batch_log: str | None = None

    def validate(self) -> None:
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if not 0 < port < 65536:
                raise ConfigError(f"ports must be in 1..65535, got {port}")
        if len({self.http_port, self.grpc_port, self.metrics_port}) != 3:
            raise ConfigError("HTTP, gRPC and metrics ports must differ")
        if self.max_batch <= 0 or self.queue_delay_us < 0:
            raise ConfigError("max batch must be positive and queue delay >= 0")


def _pytriton():
    try:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError:
        raise ConfigError(f"serving needs PyTriton: {SERVE_EXTRA}") from None
    return batch, DynamicBatcher, ModelConfig, Tensor, Triton, TritonConfig


def make_infer_fn(clf: Classifier, on_batch: Callable[[int], None] | None = None) -> Callable:
    """The function Triton calls with each dynamically formed batch: ``{input: (N,C,H,W)}`` in, logits out."""
    input_name, output_name = clf.metadata.input_name, clf.metadata.output_name

    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        x = inputs[input_name]
        if on_batch:
            on_batch(len(x))
        return {output_name: clf.logits(x).astype(np.float32)}

    return infer


def serve(config: ServeConfig, ready: Callable[[str], None] | None = None) -> None:
    """Start Triton with the model bound to a :class:`Classifier` and block until interrupted."""
    config.validate()
    batch, DynamicBatcher, ModelConfig, Tensor, Triton, TritonConfig = _pytriton()
    clf = Classifier(config.model, config.provider, max_batch=config.max_batch)
    name = config.name or clf.metadata.model
    lock = threading.Lock()
    log = Path(config.batch_log) if config.batch_log else None

    def record(n: int) -> None:
        if log is not None:
            with lock, log.open("a") as fh:
                fh.write(f"{n}\n")

    # Triton's Python-backend stub is a separate program that must find this interpreter's libpython.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
    triton_config = TritonConfig(
        http_address=config.host,
        http_port=config.http_port,
        grpc_address=config.host,
        grpc_port=config.grpc_port,
        metrics_port=config.metrics_port,
        allow_metrics=True,
        exit_on_error=True,
        exit_timeout_secs=5,
    )
    # SIGTERM (docker stop, systemd, timeout) must unwind the Triton context so the server
    # process it started goes down with us instead of being orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    c, h, w = clf.input_shape
    with Triton(config=triton_config) as triton:
        triton.bind(
            model_name=name,
            infer_func=batch(make_infer_fn(clf, record)),
            inputs=[Tensor(name=clf.metadata.input_name, dtype=np.float32, shape=(c, h, w))],
            outputs=[Tensor(name=clf.metadata.output_name, dtype=np.float32, shape=(len(clf.labels),))],
            config=ModelConfig(
                max_batch_size=config.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=config.queue_delay_us),
            ),
            strict=True,
        )
        if ready:
            ready(
                f"serving {name} ({config.model}) on http://{config.host}:{config.http_port} and grpc "
                f"{config.host}:{config.grpc_port} with {', '.join(clf.providers)}"
            )
        triton.serve()


class TritonClassifier:
    """Classify through a Triton server with the same calls as :class:`Classifier`.

    ``TritonClassifier(url, model_name, local_model)`` uses the local model file only for its
    labels, input contract and preprocessing, so raw images are prepared exactly as in-process.
    """

    def __init__(self, url: str, model_name: str, local: Classifier) -> None:
        try:
            import tritonclient.http as http
        except ImportError:
            raise ConfigError(f"talking to Triton needs tritonclient: {SERVE_EXTRA}") from None
        self._http = http
        self.local = local
        self.model_name = model_name
        self.labels = local.labels
        address = url.split("://", 1)[-1].rstrip("/")
        try:
            self.client = http.InferenceServerClient(url=address)
            ready = self.client.is_model_ready(model_name)
        except Exception as exc:  # connection refused, DNS, HTTP errors: tritonclient raises several types
            raise NinEdgeError(
                f"cannot reach Triton at {url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        if not ready:
            raise NinEdgeError(f"Triton at {url} has no ready model named {model_name!r}")

    def logits(self, batch: object) -> np.ndarray:
        """Logits computed by the server, for any input the local :meth:`Classifier.prepare` accepts."""
        x = self.local.prepare(batch)
        meta = self.local.metadata
        inp = self._http.InferInput(meta.input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = self.client.infer(self.model_name, [inp], outputs=[self._http.InferRequestedOutput(meta.output_name)])
        return result.as_numpy(meta.output_name)

    def classify(self, batch: object, top_k: int = 1):
        """Top-k predictions per image, computed by the server."""
        check_top_k(top_k, len(self.labels))
        return top_predictions(self.logits(batch), self.labels, top_k)
