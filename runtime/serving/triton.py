"""Serving a model through a real Triton Inference Server and calling it (tritonclient).

``nin-serve`` writes a one-model Triton repository for Triton's own Python backend: the model's
``execute`` gets every dynamically formed batch as a list of requests and answers each one on its
own (see :func:`answer_each`), so one bad request is a 400 for its sender alone, never a failure of
the requests batched with it, and no response carries a traceback. PyTriton is used only for the
Triton server it bundles and for starting and watching that server. Nothing here is imported by
``nin_edge.runtime`` itself; it needs the ``serve`` extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classifier import Classifier, check_top_k, default_top_k, top_predictions
from ..core.errors import ConfigError, InputError, NinEdgeError
from ..providers import parse_providers
from . import check_model_name
from .connections import CLIENT_TIMEOUT_S, check_client_timeout
from .front import Front, Limits, free_loopback_port
from .model_config import model_config_pb2, write_model_config

SERVE_EXTRA = "pip install 'nin-edge[serve]'"
# What Triton (or the C++ runtime under it) prints when it dies; the rest of its log is noise here.
_FATAL_LINE = re.compile(r"terminate called|what\(\)|Signal \(\d+\) received|^E\d{4} ")


class ServeError(NinEdgeError):
    """The Triton server could not start, or stopped while serving."""


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
    client_timeout_s: int = CLIENT_TIMEOUT_S
    verify_key: str | None = None

    def validate(self) -> None:
        parse_providers(self.provider)
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if not 0 < port < 65536:
                raise ConfigError(f"ports must be in 1..65535, got {port}")
        if len({self.http_port, self.grpc_port, self.metrics_port}) != 3:
            raise ConfigError("HTTP, gRPC and metrics ports must differ")
        if self.max_batch <= 0 or self.queue_delay_us < 0:
            raise ConfigError("max batch must be positive and queue delay >= 0")
        if self.name is not None:
            check_model_name(self.name, "--name")
        check_client_timeout(self.client_timeout_s)


def answer_each(clf: Classifier, inputs: list[np.ndarray]) -> list[np.ndarray | NinEdgeError]:
    """Logits for each request's tensor, or the error that this request alone caused.

    Valid requests run as one batch. A request whose input is refused (shape, NaN, ...) gets its
    own error; when the batch's logits are not finite, the requests run one by one so that only
    those whose values the model cannot take get an error.
    """
    answers: list[np.ndarray | NinEdgeError] = []
    valid: list[tuple[int, np.ndarray]] = []
    for k, x in enumerate(inputs):
        try:
            prepared = clf.prepare(x)
        except NinEdgeError as exc:
            answers.append(exc)
            continue
        answers.append(prepared)
        valid.append((k, prepared))
    if not valid:
        return answers
    try:
        logits = clf.run_prepared(np.concatenate([x for _, x in valid]))
    except InputError:
        for k, x in valid:
            try:
                answers[k] = clf.run_prepared(x)
            except InputError as exc:
                answers[k] = exc
        return answers
    start = 0
    for k, x in valid:
        answers[k] = logits[start : start + len(x)]
        start += len(x)
    return answers


class TritonPythonModel:
    """The model Triton's Python backend runs in its stub process (the repository's ``model.py``)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb  # type: ignore[import-not-found]  # only inside Triton

        # protobuf leaves an empty string out of the JSON Triton hands over, hence the default.
        params = {k: v.get("string_value", "") for k, v in json.loads(args["model_config"])["parameters"].items()}
        self._pb = pb
        self.clf = Classifier(
            params["model"],
            params["provider"],
            max_batch=int(params["max_batch"]),
            verify_key=params.get("verify_key") or None,  # what Triton runs is checked too, not only nin-serve's copy
        )
        self.batch_log = Path(params["batch_log"]) if params.get("batch_log") else None

    def execute(self, requests: list[Any]) -> list[Any]:
        pb, meta = self._pb, self.clf.metadata
        inputs = [pb.get_input_tensor_by_name(r, meta.input_name).as_numpy() for r in requests]
        try:
            answers = answer_each(self.clf, inputs)
        except Exception:  # an onnxruntime failure: logged here, never sent to clients with its traceback
            pb.Logger.log_error(f"nin-edge: running {meta.model} failed:\n{traceback.format_exc()}")
            internal = pb.TritonError("the model failed to run this batch; see the server log", pb.TritonError.INTERNAL)
            return [pb.InferenceResponse(error=internal) for _ in requests]
        if self.batch_log is not None:
            with self.batch_log.open("a") as fh:
                fh.write(f"{sum(len(x) for x in inputs)}\n")
        return [
            pb.InferenceResponse(output_tensors=[pb.Tensor(meta.output_name, a.astype(np.float32))])
            if isinstance(a, np.ndarray)
            else pb.InferenceResponse(error=pb.TritonError(str(a), pb.TritonError.INVALID_ARG))
            for a in answers
        ]


def write_serving_repo(config: ServeConfig, clf: Classifier, repository: Path) -> str:
    """Write the one-model repository that Triton's Python backend serves; returns the model's name."""
    name = config.name or clf.metadata.model
    check_model_name(name, "the model's own name (give --name)" if config.name is None else "--name")
    c, h, w = clf.input_shape
    params = {
        "model": str(Path(config.model).resolve()),
        "provider": config.provider,
        "max_batch": str(config.max_batch),
        "batch_log": str(Path(config.batch_log).resolve()) if config.batch_log else "",
        "verify_key": str(Path(config.verify_key).resolve()) if config.verify_key else "",
    }
    pb, _ = model_config_pb2()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=config.max_batch)
    fp32 = pb.DataType.Value("TYPE_FP32")
    cfg.input.append(pb.ModelInput(name=clf.metadata.input_name, data_type=fp32, dims=[c, h, w]))
    cfg.output.append(pb.ModelOutput(name=clf.metadata.output_name, data_type=fp32, dims=[len(clf.labels)]))
    cfg.dynamic_batching.max_queue_delay_microseconds = config.queue_delay_us
    cfg.instance_group.append(pb.ModelInstanceGroup(count=1, kind=pb.ModelInstanceGroup.Kind.Value("KIND_CPU")))
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    version = repository / name / "1"
    version.mkdir(parents=True)
    write_model_config(cfg, repository / name)
    (version / "model.py").write_text(f"from {__name__} import TritonPythonModel  # noqa: F401\n")
    return name


def _pytriton():
    try:
        from pytriton.triton import Triton, TritonConfig
    except ImportError:
        raise ConfigError(f"serving needs PyTriton: {SERVE_EXTRA}") from None
    return Triton, TritonConfig


def _death_reason(triton: object) -> str:
    """The lines of Triton's output that say why it died, if PyTriton kept them."""
    server = getattr(triton, "_triton_server", None)  # PyTriton keeps the server's output only there
    logs = server.logs() if server is not None and hasattr(server, "logs") else ""
    fatal = [line.strip() for line in logs.splitlines() if _FATAL_LINE.search(line.strip())]
    return "; ".join(fatal[-3:]) if fatal else "its output is above"


def serve(config: ServeConfig, ready: Callable[[str], None] | None = None) -> None:
    """Start Triton with the model, block until SIGINT/SIGTERM; raise :class:`ServeError` if Triton dies."""
    config.validate()
    Triton, TritonConfig = _pytriton()
    # Loaded here once to refuse a bad model, provider or name before Triton starts; the server's
    # stub process loads its own copy.
    clf = Classifier(config.model, config.provider, max_batch=config.max_batch, verify_key=config.verify_key)
    providers = ", ".join(clf.providers)
    # Triton's Python-backend stub is a separate program that must find this interpreter's libpython.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
    stopping = threading.Event()
    stopped_by: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        if stopping.is_set():
            return  # already stopping: a second Ctrl-C must not cut the clean-up short
        stopping.set()
        stopped_by.append(signum)
        # Ctrl-C ends the command as interrupted (exit 130); SIGTERM, a supervisor's stop, exits 0.
        # Either unwinds through the ``finally`` below, which stops the Triton server we started.
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(0)

    c, h, w = clf.input_shape
    limits = Limits(config.max_batch * c * h * w, f"{config.max_batch} images of {c}x{h}x{w}")
    backend_port = free_loopback_port()
    with tempfile.TemporaryDirectory(prefix="nin-serve-") as tmp:
        name = write_serving_repo(config, clf, Path(tmp))
        del clf
        triton_config = TritonConfig(
            # Triton's HTTP endpoint is private; clients reach it through the front (see front.py).
            http_address="127.0.0.1",
            http_port=backend_port,
            grpc_address=config.host,
            grpc_port=config.grpc_port,
            metrics_port=config.metrics_port,
            allow_metrics=True,
            exit_on_error=True,
            exit_timeout_secs=5,
            model_repository=Path(tmp),
        )
        front = Front(
            config.host, config.http_port, backend_port, limits, config.client_timeout_s
        )  # a busy port fails here, first
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        triton = Triton(config=triton_config)
        died = f"Triton Inference Server stopped while serving {name}"
        restart = "exiting non-zero so that a supervisor restarts nin-serve"
        watchdog = threading.Thread(
            target=_watch,
            args=(stopping, lambda: f"error: {died} ({_death_reason(triton)}); {restart}"),
            daemon=True,
        )
        watchdog.start()
        try:
            front.start()
            # Not ``with triton``: an interrupt while its __enter__ still waits for the server would
            # skip __exit__ and leave the server running.
            triton.run()
            if ready:
                ready(
                    f"serving {name} ({config.model}) on http://{config.host}:{config.http_port} and grpc "
                    f"{config.host}:{config.grpc_port} with {providers}"
                )
            triton.serve()  # returns on SIGINT (PyTriton catches it) or when Triton is gone
            if stopped_by == [signal.SIGINT]:
                raise KeyboardInterrupt
            if not stopping.is_set():
                raise ServeError(f"{died} ({_death_reason(triton)}); {restart}")
        finally:
            stopping.set()
            front.close()
            # PyTriton's stop fails when the interrupt came while it was still starting the server
            # (it unregisters a callback it had not registered yet); _stop_servers is the guarantee.
            with contextlib.suppress(Exception):
                triton.stop()
            _stop_servers()


def _stop_servers(grace_s: float = 10.0) -> None:
    """Make sure no ``tritonserver`` this process started outlives it: PyTriton's own stop can be cut
    short by the interrupt that called it. SIGINT is Triton's graceful stop; SIGKILL after ``grace_s``."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        pids = _server_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while pids and _server_pids() and time.monotonic() < deadline:
            time.sleep(0.1)


#: How long the server may stay unreachable before the watchdog ends nin-serve itself.
WATCHDOG_GRACE_S = 15.0


def _watch(stopping: threading.Event, message: Callable[[], str]) -> None:
    """End the process (exit 1) when the Triton server process, once started, is gone for good.

    PyTriton 0.7.0 can deadlock when the server dies while it is still connecting (its exit
    callback waits for a lock that the connecting thread holds), so ``serve`` would never return;
    the watchdog makes "the server died" end in exit 1 whatever PyTriton does.
    """
    seen = False
    gone_since: float | None = None
    while not stopping.wait(1.0):
        if _server_running():
            seen, gone_since = True, None
            continue
        if not seen:
            continue
        gone_since = gone_since or time.monotonic()
        if time.monotonic() - gone_since > WATCHDOG_GRACE_S and not stopping.is_set():
            sys.stderr.write(message() + "\n")
            sys.stderr.flush()
            os._exit(1)


def _server_pids() -> list[int]:
    """Live ``tritonserver`` children of this process (from /proc; Linux, as PyTriton)."""
    me, pids = str(os.getpid()), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm_end = text.rfind(")")
        comm = text[text.find("(") + 1 : comm_end]
        state, ppid = text[comm_end + 2 :].split(" ", 2)[:2]
        if ppid == me and comm == "tritonserver" and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _server_running() -> bool:
    """Whether a ``tritonserver`` child of this process is alive."""
    return bool(_server_pids())


def _server_address(url: str) -> tuple[str, bool]:
    """``host:port[/path]`` and whether to use TLS, from a Triton URL; checked here because
    tritonclient's client, when its constructor fails on a bad URL, prints a traceback from its
    ``__del__``."""
    try:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"Triton URL {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"Triton URL {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT]")
    del port  # read only to check it
    return parts.netloc + parts.path.rstrip("/"), parts.scheme == "https"


def server_max_batch(client: Any, model_name: str, url: str) -> int | None:
    """The model's ``max_batch_size`` on the server; None where the model does not batch (0)."""
    try:
        config = client.get_model_config(model_name)
    except Exception as exc:  # tritonclient raises its own and connection errors alike
        raise NinEdgeError(f"cannot read the config of model {model_name!r} from Triton at {url}: {exc}") from None
    return int(config.get("max_batch_size", 0)) or None


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
        address, ssl = _server_address(url)
        try:
            self.client = http.InferenceServerClient(url=address, ssl=ssl)
            ready = self.client.is_model_ready(model_name)
        except Exception as exc:  # connection refused, DNS, HTTP errors: tritonclient raises several types
            raise NinEdgeError(
                f"cannot reach Triton at {url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        if not ready:
            raise NinEdgeError(f"Triton at {url} has no ready model named {model_name!r}")
        #: The largest batch the server takes (its model config's max_batch_size; nin-serve --max-batch):
        #: a larger one is a 400 from Triton, so :meth:`logits` sends batches of at most this many.
        self.max_batch = server_max_batch(self.client, model_name, url)

    def logits(self, batch: object) -> np.ndarray:
        """Logits computed by the server, for any input the local :meth:`Classifier.prepare` accepts;
        a batch larger than the server's max batch goes in several requests."""
        x = self.local.prepare(batch)
        step = self.max_batch or len(x)
        return np.concatenate([self._infer(x[i : i + step]) for i in range(0, len(x), step)])

    def _infer(self, x: np.ndarray) -> np.ndarray:
        meta = self.local.metadata
        inp = self._http.InferInput(meta.input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = self.client.infer(self.model_name, [inp], outputs=[self._http.InferRequestedOutput(meta.output_name)])
        return result.as_numpy(meta.output_name)

    def classify(self, batch: object, top_k: int | None = None):
        """Top-k predictions per image (default: ``min(5, classes)``), computed by the server."""
        top_k = default_top_k(len(self.labels)) if top_k is None else top_k
        check_top_k(top_k, len(self.labels))
        return top_predictions(self.logits(batch), self.labels, top_k)
