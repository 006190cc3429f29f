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
from typing import Any

import click
import numpy as np
from nin_edge.export.timing import summarize_ms
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.common import (
    PROVIDER_HELP,
    CommaList,
    format_option,
    one_line_errors,
    provider_option,
    renamed_option,
)
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.errors import NinEdgeError
from nin_edge.runtime.core.report import Report, format_table


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
    wrong: int = 0
    max_abs_diff: float = 0.0


@dataclass(frozen=True)
class ServingReport(Report):
    """Rows for in-process and served inference at each concurrency."""

    model: str
    provider: str
    inputs: str
    seconds_per_point: float
    max_batch: int
    queue_delay_us: int
    results: tuple[ServingRow, ...]

    def rows(self) -> list[dict]:
        return [dict(r.__dict__) for r in self.results]

    def to_table(self) -> str:
        return (
            f"model {self.model} on {self.provider}; inputs: {self.inputs}; {self.seconds_per_point:g} s per point; "
            f"Triton max batch {self.max_batch}, queue delay {self.queue_delay_us} us\n" + format_table(self.rows())
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


class _Answers:
    """Checks every answer against the in-process logits of the same image, from any thread."""

    def __init__(self, expected: np.ndarray) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.wrong = 0
        self.max_abs_diff = 0.0

    def check(self, index: int, logits: np.ndarray) -> None:
        want = self.expected[index]
        got = np.asarray(logits).reshape(want.shape)
        diff = float(np.max(np.abs(got - want)))
        with self.lock:
            self.max_abs_diff = max(self.max_abs_diff, diff)
            # A batch of another size may pick other GPU kernels: small differences are expected,
            # another class or a large difference is a wrong answer.
            if got.argmax() != want.argmax() or diff > 1e-2:
                self.wrong += 1


def _load(fn, clients: int, seconds: float, inputs: int, answers: _Answers) -> tuple[list[float], float]:
    """Run ``fn(i)`` back to back from ``clients`` threads for ``seconds``, cycling through the
    inputs and checking each answer; per-call ms and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(first: int) -> None:
        mine = []
        i = first
        while time.monotonic() < stop:
            t0 = time.perf_counter_ns()
            out = fn(i % inputs)
            mine.append((time.perf_counter_ns() - t0) / 1e6)
            answers.check(i % inputs, out)
            i += clients
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0


def _row(
    mode: str, clients: int, latencies: list[float], wall: float, mean_batch: float | None, answers: _Answers
) -> ServingRow:
    stats = summarize_ms(latencies)
    return ServingRow(
        mode,
        clients,
        stats.runs,
        stats.runs / wall,
        stats.p50_ms,
        stats.p99_ms,
        mean_batch,
        answers.wrong,
        answers.max_abs_diff,
    )


def _inputs(clf: Classifier, data: str | None, count: int = 64) -> tuple[np.ndarray, str]:
    """One-image requests: real images when ``data`` is given (through the one loader: its test split,
    else its validation split), else seeded noise."""
    if data:
        from nin_edge.models.datasets import open_data

        labelled = open_data(data)
        split = labelled.split(labelled.eval_split).head(count)
        images = [split.raw(i) for i in range(len(split))]
        return clf.prepare(images), f"the first {len(images)} images of the {split.name} split of {Path(data).name}"
    return np.random.default_rng(0).random(
        (count, *clf.input_shape), dtype=np.float32
    ), f"{count} seeded random tensors"


def measure_serving(
    model: str,
    *,
    clients: tuple[int, ...] = (1, 8, 32),
    seconds: float = 5.0,
    max_batch: int = 16,
    queue_delay_us: int = 2000,
    provider: str = "cpu",
    data: str | None = None,
) -> ServingReport:
    """In-process against served throughput and latency at each client count, every answer checked
    against the in-process logits of the same image (column ``wrong``)."""
    import tritonclient.http as http

    clf = Classifier(model, provider, max_batch=max_batch)
    x, described = _inputs(clf, data)
    expected = clf.logits(x)
    rows = []
    for n in clients:
        answers = _Answers(expected)
        lat, wall = _load(lambda i: clf.logits(x[i : i + 1]), n, seconds, len(x), answers)
        rows.append(_row("in-process", n, lat, wall, None, answers))
        time.sleep(0.5)
    http_port, grpc_port, metrics_port = free_ports(3)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "batches.txt"
        server_log = Path(tmp) / "server.log"
        exe = Path(sys.executable).with_name("nin-serve")
        with server_log.open("wb") as server_out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [
                    str(exe),
                    model,
                    "--http-port",
                    str(http_port),
                    "--grpc-port",
                    str(grpc_port),
                    "--metrics-port",
                    str(metrics_port),
                    "--max-batch",
                    str(max_batch),
                    "--queue-delay-us",
                    str(queue_delay_us),
                    "--batch-log",
                    str(log),
                    "--provider",
                    provider,
                ],
                stdout=server_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            address = f"127.0.0.1:{http_port}"
            deadline = time.monotonic() + 90
            while not _ready(http, address, clf.metadata.model):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = " | ".join(server_log.read_text(errors="replace").strip().splitlines()[-5:])
                    state = (
                        f"exited with status {proc.returncode}"
                        if proc.poll() is not None
                        else "was not ready within 90 s"
                    )
                    raise NinEdgeError(f"nin-serve {state}; its last output: {tail or '(none)'}")
                time.sleep(0.5)
            local = threading.local()

            def served(i: int) -> np.ndarray:
                if not hasattr(local, "client"):
                    local.client = http.InferenceServerClient(url=address)
                inp = http.InferInput(clf.metadata.input_name, [1, *clf.input_shape], "FP32")
                inp.set_data_from_numpy(x[i : i + 1])
                return local.client.infer(clf.metadata.model, [inp]).as_numpy(clf.metadata.output_name)

            for n in clients:
                before = len(log.read_text().split()) if log.exists() else 0
                answers = _Answers(expected)
                lat, wall = _load(served, n, seconds, len(x), answers)
                sizes = [int(v) for v in log.read_text().split()[before:]]
                rows.append(_row("triton", n, lat, wall, sum(sizes) / len(sizes) if sizes else None, answers))
                time.sleep(0.5)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return ServingReport(
        model=model,
        provider=", ".join(clf.providers),
        inputs=described,
        seconds_per_point=seconds,
        max_batch=max_batch,
        queue_delay_us=queue_delay_us,
        results=tuple(rows),
    )


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
@provider_option(default="cpu", help="Provider of the server and of the in-process runs: " + PROVIDER_HELP)
@click.option(
    "--data", default=None, help="Send real images: a Fashion-MNIST IDX folder, a class folder or a manifest."
)
@renamed_option("--data-dir", "--data", "data", type=str)
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.MARKDOWN)
@one_line_errors
def main(model: str, fmt: str, **options: Any) -> None:
    """Requests per second and p50/p99 latency through nin-serve against in-process calls."""
    click.echo(measure_serving(model, **options).render(fmt))


if __name__ == "__main__":
    main()
