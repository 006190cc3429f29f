"""What serving through Triton costs and what its dynamic batching buys, against in-process calls.

``python -m nin_edge.benchmarks.serving MODEL.onnx`` starts ``nin-serve`` on free loopback ports,
then for each concurrency (default 1, 8, 32) runs that many client threads, each sending one-image
requests back to back for a fixed time, and does the same with in-process ``Classifier.logits``
calls from as many threads. Every loop is bounded in time; the server is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from nin_edge.runtime import Classifier
from nin_edge.runtime.cli_common import CommaList, format_option, one_line_errors
from nin_edge.runtime.errors import NinEdgeError
from nin_edge.runtime.report import Report, format_table

from .timing import percentile


@dataclass(frozen=True)
class ServingRow:
    """One mode at one concurrency."""

    mode: str
    clients: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float | None


@dataclass(frozen=True)
class ServingReport(Report):
    """Rows for in-process and served inference at each concurrency."""

    model: str
    seconds_per_point: float
    max_batch: int
    queue_delay_us: int
    results: tuple[ServingRow, ...]

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.results]

    def to_table(self) -> str:
        return (
            f"model {self.model}; {self.seconds_per_point:g} s per point; Triton max batch {self.max_batch}, "
            f"queue delay {self.queue_delay_us} us\n" + format_table(self.rows())
        )


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports that were free a moment ago (the OS picks them)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _load(fn, clients: int, seconds: float) -> tuple[list[float], float]:
    """Run ``fn`` back to back from ``clients`` threads for ``seconds``; per-call ms and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        mine = []
        while time.monotonic() < stop:
            t0 = time.perf_counter_ns()
            fn()
            mine.append((time.perf_counter_ns() - t0) / 1e6)
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0


def _row(mode: str, clients: int, latencies: list[float], wall: float, mean_batch: float | None) -> ServingRow:
    ordered = sorted(latencies)
    return ServingRow(mode, clients, len(ordered), len(ordered) / wall, percentile(ordered, 50), percentile(ordered, 99), mean_batch)


def measure_serving(
    model: str, *, clients: tuple[int, ...] = (1, 8, 32), seconds: float = 5.0, max_batch: int = 16, queue_delay_us: int = 2000
) -> ServingReport:
    """In-process against served throughput and latency at each client count."""
    import tritonclient.http as http

    clf = Classifier(model, "cpu", max_batch=max_batch)
    x = np.random.default_rng(0).random((1, *clf.input_shape), dtype=np.float32)
    rows = []
    for n in clients:
        lat, wall = _load(lambda: clf.logits(x), n, seconds)
        rows.append(_row("in-process", n, lat, wall, None))
        time.sleep(0.5)
    http_port, grpc_port, metrics_port = free_ports(3)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "batches.txt"
        exe = Path(sys.executable).with_name("nin-serve")
        proc = subprocess.Popen(
            [str(exe), model, "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port",
             str(metrics_port), "--max-batch", str(max_batch), "--queue-delay-us", str(queue_delay_us), "--batch-log", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            address = f"127.0.0.1:{http_port}"
            deadline = time.monotonic() + 90
            while not _ready(http, address, clf.metadata.model):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise NinEdgeError("nin-serve did not become ready within 90 s")
                time.sleep(0.5)
            local = threading.local()

            def served() -> None:
                if not hasattr(local, "client"):
                    local.client = http.InferenceServerClient(url=address)
                    local.inp = http.InferInput("input", list(x.shape), "FP32")
                    local.inp.set_data_from_numpy(x)
                local.client.infer(clf.metadata.model, [local.inp])

            for n in clients:
                before = len(log.read_text().split()) if log.exists() else 0
                lat, wall = _load(served, n, seconds)
                sizes = [int(v) for v in log.read_text().split()[before:]]
                rows.append(_row("triton", n, lat, wall, sum(sizes) / len(sizes) if sizes else None))
                time.sleep(0.5)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return ServingReport(model=model, seconds_per_point=seconds, max_batch=max_batch, queue_delay_us=queue_delay_us,
                         results=tuple(rows))  # fmt: skip


def _ready(http, address: str, name: str) -> bool:
    try:
        return http.InferenceServerClient(url=address).is_model_ready(name)
    except Exception:  # not listening yet
        return False


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--clients", type=CommaList(int, positive=True), default="1,8,32", show_default=True)
@click.option("--seconds", type=float, default=5.0, show_default=True, help="Load time per point.")
@click.option("--max-batch", type=int, default=16, show_default=True)
@click.option("--queue-delay-us", type=int, default=2000, show_default=True)
@format_option("table", "json", "markdown")
@one_line_errors
def main(model: str, fmt: str, **options: object) -> None:
    """Requests per second and p50/p99 latency through nin-serve against in-process calls."""
    click.echo(measure_serving(model, **options).render(fmt))


if __name__ == "__main__":
    main()
