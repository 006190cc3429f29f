"""``run_bench``: latency, throughput, parameters and MACs of zoo models per provider and batch.

Models come from the registry and are exported through :mod:`nin_edge.export` into a cache keyed
by model, opset, input size, precision and toolkit version; timing goes through
:class:`nin_edge.runtime.Classifier`, the code apps embed.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from nin_edge.export import ExportConfig, run_export
from nin_edge.export.pipeline import build_model
from nin_edge.export.timing import Clock, LatencyStats, measure, summarize
from nin_edge.models import ModelProfile, create_model, list_models, model_card, profile_model
from nin_edge.models.limits import check_input_budget
from nin_edge.models.registry import pretrained_path
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.cache import DigestedFile
from nin_edge.runtime.core.choices import Precision
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError, NinEdgeError
from nin_edge.runtime.core.metadata import toolkit_version
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.int8 import cpu_class
from nin_edge.runtime.providers import TENSORRT, ProviderKind, is_gpu, missing_provider_message, parse_provider
from nin_edge.runtime.session import plain_session

from .machine import environment
from .peers import PeerModel, PeerUnsupportedError, resolve_peers

OPSET = 17
TABLE_COLUMNS = (
    "model",
    "backend",
    "provider",
    "precision",
    "batch_size",
    "params",
    "macs",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "throughput",
    "gflops",
    "vs_nin",
    "speedup_vs_torch",
    "max_logit_diff",
    "error",
)


def default_cache_dir() -> Path:
    """``$NIN_EDGE_CACHE``, else ``$XDG_CACHE_HOME/nin-edge``, else ``~/.cache/nin-edge``."""
    if os.environ.get("NIN_EDGE_CACHE"):
        return Path(os.environ["NIN_EDGE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "nin-edge"


@dataclass(frozen=True)
class BenchConfig:
    """Options of a benchmark run; each field is also the ``nin-bench`` flag of the same name."""

    models: tuple[str, ...] = ("nin", "alexnet", "vgg11")
    provider: tuple[str, ...] = ("cpu",)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 3
    iterations: int = 20
    duration: float = 1.0
    precision: tuple[str, ...] = ("fp32",)
    torch: bool = False
    torch_compile: bool = False
    model_path: tuple[str, ...] = ()
    input_size: int = 224
    threads: int | None = None
    fallback: bool = False
    io_binding: bool = True
    tensorrt_fp16: bool = False
    cudnn_conv_algo_search: str = "HEURISTIC"
    calibration_data: str = "synthetic"
    pause: float = 0.2
    cache_dir: str | None = None
    #: Peer runtimes (benchmarks/peers.py) timed on the same inputs, interleaved with the first provider's rows.
    peers: tuple[str, ...] = ()

    def validate(self) -> None:
        """Check every option before anything is exported or timed."""
        if not self.models and not self.model_path:
            raise ConfigError("nothing to benchmark: give --models and/or --model-path")
        known = list_models()
        for name in self.models:
            if name not in known:
                raise ConfigError(f"unknown model {name!r}; known models: {', '.join(known)}")
        for path in self.model_path:
            if not Path(path).is_file():
                raise ConfigError(f"model file '{path}' does not exist")
        for p in self.precision:
            Precision.check(p, "precision")
        if not self.batch_sizes or any(b <= 0 for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must be positive, got {list(self.batch_sizes)}")
        if self.warmup < 0 or self.iterations <= 0:
            raise ConfigError(f"warmup must be >= 0 and iterations > 0, got {self.warmup} and {self.iterations}")
        for name in ("duration", "pause"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--{name} must be a finite number of seconds >= 0, got {value}")
        for b in self.batch_sizes:
            check_input_budget(b, 1, self.input_size, "--batch-sizes")
        available = ort.get_available_providers()
        for p in self.provider:
            wanted = parse_provider(p)
            # A plugin is not listed until registered; its row says why it cannot run.
            if wanted.name not in available and wanted.kind is not ProviderKind.PLUGIN and not self.fallback:
                raise ConfigError(missing_provider_message(wanted.name, available) + "; or pass --fallback")
        resolve_peers(self.peers)

    @property
    def torch_device(self) -> str:
        """Where PyTorch rows run: the GPU when a GPU provider is measured and torch has CUDA, else the CPU."""
        gpu = any(is_gpu(p) for p in self.provider)
        return "cuda" if gpu and torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    model: str
    backend: str
    provider: str
    precision: str
    batch_size: int
    params: int | None
    macs: int | None
    file_bytes: int | None
    runs: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    throughput: float | None = None
    gflops: float | None = None
    vs_nin: float | None = None
    speedup_vs_torch: float | None = None
    #: With --peers: the largest absolute logit difference from nin-edge's FP32 model on the same inputs (peer rows
    #: and the first provider's nin-edge rows they are measured beside).
    max_logit_diff: float | None = None
    io_binding: bool = False
    error: str | None = None


@dataclass(frozen=True)
class BenchReport(Report):
    """The machine and one row per measured configuration."""

    environment: dict
    results: tuple[Row, ...]

    def rows(self) -> list[dict]:
        return [asdict(r) for r in self.results]

    def to_table(self) -> str:
        env = self.environment
        head = format_pairs(
            [
                ("cpu", f"{env['cpu']} ({env['cores']} cores, {env['threads']} threads used)"),
                ("gpu", env["gpu"] or "none"),
                ("versions", f"onnxruntime {env['onnxruntime']}, torch {env['torch']}, nin-edge {env['nin_edge']}"),
                ("providers", ", ".join(env["providers_available"])),
            ]
            + ([("peers", ", ".join(f"{k} {v}" for k, v in env["peers"].items()))] if env.get("peers") else [])
            + [
                ("matmul peak", f"{env['matmul_peak_gflops']:.1f} GFLOP/s (torch sgemm 2048, measured in this run)"),
            ]
            + [(f"gpu {k}", v) for k, v in (env.get("gpu_details") or {}).items()]
            + ([("int8 calibration", env["int8_calibration"])] if env.get("int8_calibration") else [])
        )
        rows = [{c: r.get(c) for c in TABLE_COLUMNS} for r in self.rows()]
        shown = [c for c in TABLE_COLUMNS if any(row[c] is not None for row in rows)]
        return head + "\n\n" + format_table(rows, shown)


def cached_export(
    name: str, input_size: int, precision: str, cache_dir: Path, calibration_data: str = "synthetic"
) -> Path:
    """The exported model from the cache, exported (and verified) first if it is not there yet.

    The key holds model, opset, input size, precision, weights (a digest of the shipped file and the
    card's model options, or random) and toolkit version, and for INT8 a digest of the calibration
    source and this CPU's INT8 class, since other images or another class's recipe give another model.
    New weights under an old name (nin_pruned's widths changed on 2026-12-07) must not reuse the old file.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    card = model_card(name)
    tag = precision + (f"-pretrained-{_weights_digest(name)}" if card.weights_fit() else "-random")
    if precision == "int8":
        tag += "-" + hashlib.sha256(str(calibration_data).encode()).hexdigest()[:8] + f"-{cpu_class()}"
    path = cache_dir / f"{name}-opset{OPSET}-{input_size}px-{tag}-v{toolkit_version()}.onnx"
    # A kill or a full disk mid-export leaves a partial entry: rebuild it rather than fail on it forever.
    entry = DigestedFile(path, "cached export '{path}' is damaged or incomplete; exporting it again")
    if entry.usable():
        return path
    run_export(
        ExportConfig(
            model=name,
            opset=OPSET,
            output=str(path),
            input_size=input_size,
            check_batch_sizes=(1,),
            random_init=not model_card(name).weights_fit(),
            precision=precision,
            calibration_data=calibration_data if precision == "int8" else None,
            # Speed rows: agreement is not judged here (min_agreement 0), so the comparison may use the
            # calibration source's test split instead of needing held-out calibration images.
            eval_data=calibration_data if precision == "int8" and calibration_data != "synthetic" else None,
            eval_size=64,
            min_agreement=0.0,  # speed rows: accuracy is judged by nin-export and nin-eval, not here
        )
    )
    entry.record_digest()
    return path


def _weights_digest(name: str) -> str:
    """Eight hex digits naming the shipped weights of ``name`` and the model options its card builds them with."""
    digest = hashlib.sha256(pretrained_path(name).read_bytes())
    digest.update(repr(sorted(model_card(name).model_options.items())).encode())
    return digest.hexdigest()[:8]


def timed_call(clf: Classifier, x: np.ndarray, io_binding: bool) -> tuple[Callable[[], object], bool]:
    """The function to time. On a GPU provider with IO binding the input stays on the device and
    the call synchronises before returning; otherwise it is the app's own ``logits`` call."""
    gpu = is_gpu(clf.providers[0])
    if not (gpu and io_binding):
        return (lambda: clf.logits(x)), False
    session = clf.session
    binding = session.io_binding()
    device = ort.OrtValue.ortvalue_from_numpy(x, "cuda", clf.config.device_id)
    binding.bind_ortvalue_input(clf.metadata.input_name, device)
    binding.bind_output(clf.metadata.output_name, "cuda", clf.config.device_id)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    # A timing of the wrong computation is worthless: the bound run must give the app's answer.
    run()
    bound_logits = binding.copy_outputs_to_cpu()[0]
    expected = clf.logits(x)
    if bound_logits.shape != expected.shape or not np.allclose(bound_logits, expected, rtol=1e-3, atol=1e-3):
        worst = float(np.max(np.abs(bound_logits - expected))) if bound_logits.shape == expected.shape else float("nan")
        raise CheckFailedError(f"IO-binding run differs from Classifier.logits by up to {worst:.3g}; not timed")
    return run, True


def _is_oom(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "failed to allocate", "bad_alloc", "cudaerrormemoryallocation"))


def model_files(
    config: BenchConfig, cache: Path, say: Callable[[str], None]
) -> list[tuple[str, str, Path, ModelProfile | None]]:
    """(name, precision, ONNX file, PyTorch profile) of each model to measure, exported into ``cache``."""
    entries: list[tuple[str, str, Path, ModelProfile | None]] = []
    for name in config.models:
        model_profile = profile_model(create_model(name, input_size=config.input_size))
        for precision in config.precision:
            say(f"exporting {name} ({precision}) into the cache {cache}")
            path = cached_export(name, config.input_size, precision, cache, config.calibration_data)
            entries.append((name, precision, path, model_profile))
    entries.extend((Path(p).stem, "as given", Path(p), None) for p in config.model_path)
    return entries


def run_bench(
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
    clock: Clock = time.perf_counter_ns,
) -> BenchReport:
    """Benchmark every model x provider x precision x batch size of ``config``."""
    config.validate()
    say = progress or (lambda _msg: None)
    env = environment(config)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    threads = env["threads"]
    entries = model_files(config, cache, say)

    engines = cache / "trt-engines"
    engines.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    peers = PeerRows(config, cache, threads, say)
    for provider in config.provider:
        for name, precision, path, profile in entries:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a fallback is reported below instead
                    clf = Classifier(
                        path,
                        provider,
                        fallback=config.fallback,
                        threads=threads,
                        max_batch=max(config.batch_sizes),
                        labels=foreign_labels(path),
                        fp16=config.tensorrt_fp16,
                        engine_cache_dir=str(engines),
                        cudnn_conv_algo_search=config.cudnn_conv_algo_search,
                    )
            except NinEdgeError as exc:
                rows.extend(_error_rows(name, provider, precision, config, profile, path, str(exc)))
                continue
            if clf.fallback_reason:
                say(f"warning: {clf.fallback_reason}")
            if config.tensorrt_fp16 and clf.providers[0] == TENSORRT:
                precision = f"{precision}+tensorrt-fp16"
            for batch in config.batch_sizes:
                say(f"{name} on {clf.providers[0]} ({precision}), batch {batch}")
                row = _bench_one(clf, name, precision, batch, config, profile, path, clock)
                time.sleep(config.pause)  # let onnxruntime's spinning threads settle before the next run
                # Peers convert the registered model, so --model-path files get no peer rows.
                peered = provider == config.provider[0] and bool(peers.peers)
                if peered and profile is not None and row.error is None:
                    # nin-edge's own row gets the column too, so an INT8 peer is judged beside nin-edge's INT8.
                    row = replace(row, max_logit_diff=peers.diff(name, clf.logits, batch))
                rows.append(row)
                if peered and profile is not None:
                    rows.extend(peers.measure(name, precision, path, batch, profile, clock))
    modes = [m for m, on in (("eager", config.torch), ("compile", config.torch_compile)) if on]
    device = config.torch_device
    for mode in modes:
        for name, precision, _path, profile in entries:
            if profile is None or precision != "fp32":
                continue
            for batch in config.batch_sizes:
                say(f"{name} on PyTorch {mode} ({device}), batch {batch}")
                rows.append(_bench_torch(name, batch, config, profile, threads, clock, mode=mode, device=device))
                time.sleep(config.pause)
    return BenchReport(environment=env, results=tuple(_relate(rows)))


class PeerRows:
    """Rows of the ``--peers`` runtimes, measured right after nin-edge's row of the same model, precision and
    batch (interleaved, so a busy machine slows both alike) on the same input, each with its largest logit
    difference from nin-edge's FP32 model on that input."""

    def __init__(self, config: BenchConfig, cache: Path, threads: int, say: Callable[[str], None]) -> None:
        self.config, self.cache, self.threads, self.say = config, cache, threads, say
        self.peers = resolve_peers(config.peers)
        self._reference: dict[tuple[str, int], np.ndarray] = {}

    def reference(self, name: str, x: np.ndarray) -> np.ndarray:
        """nin-edge's FP32 logits of ``x`` on the CPU provider (exported into the cache if needed)."""
        key = (name, len(x))
        if key not in self._reference:
            fp32 = cached_export(name, self.config.input_size, "fp32", self.cache, self.config.calibration_data)
            self._reference[key] = Classifier(fp32, "cpu", threads=self.threads).logits(x)
        return self._reference[key]

    def diff(self, name: str, run: Callable[[np.ndarray], np.ndarray], batch: int) -> float:
        """The largest absolute difference of ``run``'s logits from nin-edge FP32's on the timed input of ``batch``."""
        x = _inputs((batch, *self.shape(name)))
        return float(np.max(np.abs(np.asarray(run(x), dtype=np.float64) - self.reference(name, x))))

    def shape(self, name: str) -> tuple[int, int, int]:
        """One input image's shape (channels, size, size) for the registered model ``name``."""
        return (model_card(name).in_channels, self.config.input_size, self.config.input_size)

    def measure(
        self, name: str, precision: str, path: Path, batch: int, profile: ModelProfile, clock: Clock
    ) -> list[Row]:
        """One row per peer and peer precision that starts from nin-edge's ``precision`` export."""
        rows = []
        for peer in self.peers:
            for label in peer.row_precisions((precision,)):
                self.say(f"{name} on peer {peer.name} ({label}), batch {batch}")
                rows.append(self._one(peer, label, name, path, batch, profile, clock))
                time.sleep(self.config.pause)
        return rows

    def _one(self, peer, label, name, path, batch, profile, clock) -> Row:
        work = self.cache / "peers"
        work.mkdir(parents=True, exist_ok=True)
        shape = self.shape(name)
        model = PeerModel(name, path, lambda: self._module(name), shape, work)
        base = Row(
            model=name,
            backend=peer.name,
            provider=peer.provider,
            precision=label,
            batch_size=batch,
            params=profile.params,
            macs=profile.macs,
            file_bytes=None,
        )
        x = _inputs((batch, *shape))
        try:
            built = peer.build(model, batch, label, self.threads)
        except PeerUnsupportedError as exc:
            return replace(base, error=str(exc))
        except Exception as exc:  # a peer's converter failing is a result to report, not a crash of the run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return replace(base, error=f"{peer.name} could not build it: {type(exc).__name__}: {first}"[:300])
        base = replace(base, file_bytes=built.artifact.stat().st_size)
        diff = self.diff(name, built.run, batch)
        durations = measure(
            lambda: built.run(x),
            warmup=self.config.warmup,
            min_runs=self.config.iterations,
            min_seconds=self.config.duration,
            clock=clock,
        )
        return replace(_row_from(summarize(durations), base=base, batch=batch, macs=profile.macs), max_logit_diff=diff)

    def _module(self, name: str) -> torch.nn.Module:
        """The PyTorch model with the weights nin-edge's export of ``name`` holds (built as :func:`cached_export`
        builds it)."""
        config = ExportConfig(
            model=name, input_size=self.config.input_size, random_init=not model_card(name).weights_fit()
        )
        return build_model(config.resolved())[0]


def foreign_labels(path: Path) -> list[str] | None:
    """Placeholder labels for an ONNX classifier that nin-export did not write (None for ours).

    Benchmarking needs no real class names, only their count, read from the output's last axis.
    """
    session = plain_session(path, optimize=False)
    if "labels" in session.get_modelmeta().custom_metadata_map:
        return None
    outputs = session.get_outputs()
    classes = outputs[0].shape[-1] if len(outputs) == 1 and outputs[0].shape else None
    if not isinstance(classes, int):
        raise ConfigError(f"model '{path}' has no nin-edge metadata and no fixed class count in its output")
    return [f"class_{i}" for i in range(classes)]


def _inputs(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _error_rows(name, provider, precision, config, profile, path, message) -> list[Row]:
    return [
        Row(
            model=name,
            backend="onnxruntime",
            provider=provider,
            precision=precision,
            batch_size=b,
            params=getattr(profile, "params", None),
            macs=getattr(profile, "macs", None),
            file_bytes=path.stat().st_size if path else None,
            error=message,
        )
        for b in config.batch_sizes
    ]


def _row_from(stats: LatencyStats, *, base: Row, batch: int, macs: int | None) -> Row:
    seconds = stats.mean_ms / 1e3
    return replace(
        base,
        **asdict(stats),
        throughput=batch / seconds,
        gflops=2 * macs * batch / seconds / 1e9 if macs else None,
    )


def _bench_one(clf, name, precision, batch, config, profile, path, clock) -> Row:
    base = Row(
        model=name,
        backend="onnxruntime",
        provider=clf.providers[0],
        precision=precision,
        batch_size=batch,
        params=getattr(profile, "params", None),
        macs=getattr(profile, "macs", None),
        file_bytes=path.stat().st_size,
    )
    if clf.fixed_batch and batch != clf.fixed_batch:
        return replace(base, error=f"the model has a fixed batch of {clf.fixed_batch}; batch {batch} not measured")
    try:
        x = _inputs((batch, *clf.input_shape))
        fn, bound = timed_call(clf, x, config.io_binding)
        durations = measure(
            fn, warmup=config.warmup, min_runs=config.iterations, min_seconds=config.duration, clock=clock
        )
    except NinEdgeError as exc:
        return replace(base, error=str(exc))
    except Exception as exc:  # onnxruntime reports allocation failures as generic runtime errors
        if not _is_oom(exc):
            raise
        return replace(base, error=f"out of memory at batch {batch}")
    return replace(_row_from(summarize(durations), base=base, batch=batch, macs=base.macs), io_binding=bound)


def _bench_torch(name, batch, config, profile, threads, clock, *, mode: str = "eager", device: str = "cpu") -> Row:
    """PyTorch on the same inputs: ``eager`` or ``compile`` (torch.compile, default inductor), on ``device``.

    On CUDA each run synchronises, as the onnxruntime GPU rows do, so both time finished work.
    """
    torch.set_num_threads(threads)
    model = create_model(name, input_size=config.input_size).eval().to(device)
    x = torch.from_numpy(_inputs((batch, model.in_channels, config.input_size, config.input_size))).to(device)
    label = mode if device == "cpu" else f"{mode}-{device}"
    base = Row(
        model=name,
        backend="torch",
        provider=label,
        precision="fp32",
        batch_size=batch,
        params=profile.params,
        macs=profile.macs,
        file_bytes=None,
    )
    net = torch.compile(model) if mode == "compile" else model
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        with torch.inference_mode():
            net(x)
        sync()

    try:
        durations = measure(
            run, warmup=config.warmup, min_runs=config.iterations, min_seconds=config.duration, clock=clock
        )
    except RuntimeError as exc:
        if not _is_oom(exc):
            raise
        return replace(base, error=f"out of memory at batch {batch}")
    return _row_from(summarize(durations), base=base, batch=batch, macs=profile.macs)


def _relate(rows: list[Row]) -> list[Row]:
    """Add each row's latency ratio to NiN's and the runtime's speed-up over PyTorch eager."""

    def key(r: Row) -> tuple:
        return (r.backend, r.provider, r.precision, r.batch_size)

    nin = {key(r): r.p50_ms for r in rows if r.model == "nin" and r.p50_ms}
    eager = {
        (r.model, r.batch_size): r.p50_ms
        for r in rows
        if r.backend == "torch" and r.provider.startswith("eager") and r.p50_ms
    }
    out = []
    for r in rows:
        vs_nin = r.p50_ms / nin[key(r)] if r.p50_ms and key(r) in nin else None
        speedup = (
            eager[(r.model, r.batch_size)] / r.p50_ms
            if r.backend == "onnxruntime" and r.p50_ms and (r.model, r.batch_size) in eager
            else None
        )
        out.append(replace(r, vs_nin=vs_nin, speedup_vs_torch=speedup))
    return out
