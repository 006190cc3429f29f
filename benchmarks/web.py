"""The web target in a real browser: per-image latency, time to the first answer, folder size.

``python -m nin_edge.benchmarks.web BUNDLE`` writes the bundle's web folder, serves it as
``nin-serve --web`` does and drives headless Chromium (Debian's ``chromium``, through Playwright)
through the page's own file input: per-image p50 with 1 and 2 WebAssembly threads, FP32 and INT8,
beside Python's onnxruntime on the CPU with the same threads on the same images and models
(rounds alternate browser and Python so that load from other processes hits both); the time from
navigation to the first answer in a fresh browser context (nothing cached); and the folder's size.
The tests use the browser helpers below as well.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
from nin_edge.export.targets.bundle import machine_description
from nin_edge.export.targets.web import WebConfig, write_web
from nin_edge.export.timing import measure, summarize_ms
from nin_edge.models.data import load_split
from nin_edge.runtime import Classifier
from nin_edge.runtime.cli.common import format_option, one_line_errors
from nin_edge.runtime.core.choices import OutputFormat
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.preprocess import preprocess_image
from nin_edge.runtime.serving.web import WebServeConfig, make_server

#: Seconds between the browser's and Python's blocks: onnxruntime's worker threads spin for about
#: 60 ms after a run, which on 2 cores slows whatever runs next.
PAUSE_S = 0.5


@contextlib.contextmanager
def serving(folder: Path, server: http.server.ThreadingHTTPServer | None = None) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (as ``nin-serve --web`` does, unless ``server`` is given); yields its URL."""
    server = server or make_server(WebServeConfig(web=str(folder), http_port=0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _chromium_path(executable: str | None) -> str:
    path = executable or os.environ.get("NIN_EDGE_CHROMIUM") or shutil.which("chromium")
    if path is None:
        raise ConfigError("no Chromium found: apt-get install -y chromium (or give its path in NIN_EDGE_CHROMIUM)")
    return path


def _launch(browser_type: Any, path: str, args: tuple[str, ...]) -> Any:
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses to run as root
    return browser_type.launch(executable_path=path, args=[*sandbox, *args])


@contextlib.contextmanager
def chromium(executable: str | None = None, args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Headless Chromium under Playwright: Debian's ``chromium`` (Playwright's own download is not used),
    started with the extra command-line ``args``."""
    path = _chromium_path(executable)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ConfigError("driving Chromium needs Playwright for Python: pip install playwright") from None
    with sync_playwright() as p:
        browser = _launch(p.chromium, path, args)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def another_chromium(browser: Any, args: tuple[str, ...] = (), executable: str | None = None) -> Iterator[Any]:
    """A second Chromium beside ``browser`` (one from :func:`chromium`) with other command-line ``args``,
    in the same Playwright: its synchronous API allows one running instance per thread."""
    other = _launch(browser.browser_type, _chromium_path(executable), args)
    try:
        yield other
    finally:
        other.close()


def open_page(browser_or_context: Any, url: str) -> Any:
    """A page of the web folder at ``url``, once it says the model is loaded (or why not)."""
    page = browser_or_context.new_page()
    page.goto(url)
    wait_loaded(page)
    return page


def wait_loaded(page: Any) -> None:
    """Wait until the page says its model is loaded, or why not (after a navigation: ``open_page``, a picker)."""
    page.wait_for_function("['ready', 'error'].includes(document.getElementById('status').dataset.state)")


def feed(page: Any, path: Path) -> dict[str, Any]:
    """Give the page one file through its own file input; the answer it shows, or its error message."""
    seq = page.locator("#result").get_attribute("data-seq") or "0"
    page.set_input_files("#file", str(path))
    page.wait_for_function(
        "s => (document.getElementById('result').dataset.seq || '0') !== s"
        " || document.getElementById('status').dataset.state === 'error'",
        arg=seq,
    )
    status = page.locator("#status")
    if status.get_attribute("data-state") == "error":
        return {"error": status.inner_text()}
    r = page.locator("#result")
    return {
        "top1": int(r.get_attribute("data-top1")),
        "probs": json.loads(r.get_attribute("data-probs")),
        "ms": float(r.get_attribute("data-ms")),
        "inference_ms": float(r.get_attribute("data-inference-ms")),
        "backend": r.get_attribute("data-backend"),
    }


def write_pngs(images: np.ndarray, folder: Path) -> list[Path]:
    """Each uint8 image as a PNG in ``folder`` (made if needed); their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"image-{i:03d}.png")
        Image.fromarray(im).save(paths[-1])
    return paths


@dataclass(frozen=True)
class WebBenchConfig:
    """Options of the web benchmark; each field is also its flag."""

    bundle: str = ""
    data: str = "tests/data"
    images: int = 100
    warmup: int = 10
    rounds: int = 2
    threads: tuple[int, ...] = (1, 2)
    loads: int = 5
    chromium: str | None = None

    def validate(self) -> None:
        if not Path(self.bundle).is_dir():
            raise ConfigError(f"bundle '{self.bundle}' is not a folder; give a bundle written by nin-export --bundle")
        for name in ("images", "rounds", "loads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or not self.threads or min(self.threads) < 1:
            raise ConfigError("--warmup must be >= 0 and --threads whole numbers >= 1")


@dataclass(frozen=True)
class WebBenchReport(Report):
    """Per-image p50 in the browser and in Python, first answer, folder size."""

    machine: str
    browser: str
    date: str
    images: int
    latency: list[dict[str, Any]]
    first_answer_ms: float
    model_ready_ms: float
    folder_bytes: int
    fp32_and_runtime_bytes: int
    #: The 1-minute load average before and after: on a shared machine it says how noisy the figures are.
    load_average: tuple[float, float] = (0.0, 0.0)
    files: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        return self.latency

    def to_table(self) -> str:
        pairs = [
            ("machine", self.machine),
            ("browser", self.browser),
            ("date", self.date),
            ("load average", f"{self.load_average[0]:.1f} before, {self.load_average[1]:.1f} after"),
            ("images", f"{self.images} per configuration and round (Fashion-MNIST PNGs, 28x28)"),
            ("page load to model ready", f"{self.model_ready_ms:.0f} ms (median, fresh context)"),
            ("page load to first answer", f"{self.first_answer_ms:.0f} ms (median, fresh context)"),
            (
                "web folder",
                f"{self.folder_bytes / 1e6:.1f} MB; FP32 model + runtime {self.fp32_and_runtime_bytes / 1e6:.1f} MB",
            ),
        ]
        return format_pairs(pairs) + "\n\n" + format_table(self.latency)


def _browser_ms(browser: Any, url: str, paths: list[Path], warmup: int) -> tuple[list[float], list[float]]:
    page = open_page(browser, url)
    if page.locator("#status").get_attribute("data-state") != "ready":
        raise ConfigError(f"the page did not load its model: {page.locator('#status').inner_text()}")
    total, inference = [], []
    for i, path in enumerate(paths[:warmup] + paths):
        got = feed(page, path)
        if "error" in got:
            raise ConfigError(f"the page refused {path.name}: {got['error']}")
        if i >= warmup:
            total.append(got["ms"])
            inference.append(got["inference_ms"])
    page.close()
    return total, inference


def _python_ms(clf: Classifier, images: np.ndarray, warmup: int) -> tuple[list[float], list[float]]:
    """Per image: ``probabilities`` on the raw pixels (preprocessing included), and ``logits`` alone."""
    meta = clf.metadata
    tensors = [
        preprocess_image(im, channels=meta.in_channels, size=meta.input_size, pre=meta.preprocessing, where="bench")[
            None
        ]
        for im in images
    ]
    pixels, batches = iter(list(images[:warmup]) + list(images)), iter(tensors[:warmup] + tensors)
    total = measure(lambda: clf.probabilities(next(pixels)), warmup=warmup, min_runs=len(images), max_runs=len(images))
    inference = measure(lambda: clf.logits(next(batches)), warmup=warmup, min_runs=len(images), max_runs=len(images))
    return [ns / 1e6 for ns in total], [ns / 1e6 for ns in inference]


def _first_answer(browser: Any, url: str, path: Path) -> tuple[float, float]:
    """Navigation start to model ready and to the first answer, in a fresh context (nothing cached)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url, wait_until="commit")
    page.set_input_files("#file", str(path))  # the page classifies a file given while it loads, once ready
    page.wait_for_function("document.getElementById('result').dataset.sinceLoadMs !== undefined", timeout=60_000)
    r = page.locator("#result")
    first, ready = float(r.get_attribute("data-since-load-ms")), float(r.get_attribute("data-ready-ms"))
    context.close()
    return ready, first


def run_web_bench(config: WebBenchConfig, browser: Any = None) -> WebBenchReport:
    """Measure the web target of ``config.bundle`` (see the module's docstring), in ``browser`` (a
    Playwright browser) if given, else in a Chromium started for it."""
    config.validate()
    load_before = os.getloadavg()[0]
    images = load_split(Path(config.data), "test").images[: config.images]
    with tempfile.TemporaryDirectory(prefix="nin-edge-web-bench-") as tmp:
        web = Path(tmp) / "web"
        summary = write_web(WebConfig(source=config.bundle, folder=str(web)))
        paths = write_pngs(images, Path(tmp) / "png")
        desc = json.loads((web / "nin-edge.json").read_text())
        results: dict[tuple[str, str, int], list[list[float]]] = {}
        started = contextlib.nullcontext(browser) if browser is not None else chromium(config.chromium)
        with started as browser, serving(web) as url:
            for _ in range(config.rounds):
                for precision in summary.models:
                    for threads in config.threads:
                        b = _browser_ms(browser, f"{url}?precision={precision}&threads={threads}", paths, config.warmup)
                        time.sleep(PAUSE_S)
                        clf = Classifier(config.bundle, "cpu", precision=precision, threads=threads)
                        p = _python_ms(clf, images, config.warmup)
                        time.sleep(PAUSE_S)
                        for where, (total, inference) in (("browser (WebAssembly)", b), ("Python onnxruntime CPU", p)):
                            slot = results.setdefault((where, precision, threads), [[], []])
                            slot[0].extend(total)
                            slot[1].extend(inference)
            loads = [_first_answer(browser, url, paths[0]) for _ in range(config.loads)]
            version = browser.version
    latency = []
    for (where, precision, threads), (total, inference) in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        latency.append(
            {
                "where": where,
                "precision": precision,
                "threads": threads,
                "p50_ms": round(summarize_ms(total).p50_ms, 3),
                "model_p50_ms": round(summarize_ms(inference).p50_ms, 3),
                "runs": len(total),
            }
        )
    int8 = desc["models"].get("int8", {}).get("bytes", 0)
    return WebBenchReport(
        machine=machine_description(),
        browser=f"Chromium {version} (headless)",
        date=time.strftime("%Y-%m-%d"),
        images=config.images,
        latency=latency,
        model_ready_ms=float(np.median([r for r, _ in loads])),
        first_answer_ms=float(np.median([f for _, f in loads])),
        folder_bytes=summary.total_bytes,
        fp32_and_runtime_bytes=summary.total_bytes - int8,
        load_average=(load_before, os.getloadavg()[0]),
        files=summary.files,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", type=click.Path())
@click.option("--data", default=WebBenchConfig.data, show_default=True, help="Fashion-MNIST folder (test split).")
@click.option("--images", type=int, default=WebBenchConfig.images, show_default=True)
@click.option("--warmup", type=int, default=WebBenchConfig.warmup, show_default=True)
@click.option("--rounds", type=int, default=WebBenchConfig.rounds, show_default=True)
@click.option("--loads", type=int, default=WebBenchConfig.loads, show_default=True, help="Fresh page loads timed.")
@click.option("--chromium", default=None, help="Chromium's executable [default: chromium on PATH].")
@format_option(OutputFormat.TABLE, OutputFormat.JSON)
@one_line_errors
def main(fmt: str, **options: Any) -> None:
    """Measure BUNDLE's web target in headless Chromium beside Python onnxruntime on this CPU."""
    click.echo(run_web_bench(WebBenchConfig(**options)).render(fmt))


if __name__ == "__main__":
    main()
