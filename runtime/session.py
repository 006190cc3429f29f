"""Building the onnxruntime session behind a :class:`~nin_edge.runtime.Classifier`.

Kept apart from the runner, as Polygraphy keeps loaders apart from runners: the options
(:class:`RuntimeConfig`), where the model comes from, provider planning (with the TensorRT input
probe only when TensorRT is planned), loading the CUDA libraries, the optimised-graph cache, and
the check that the provider asked for is the one onnxruntime enabled.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from .core.cache import DigestedFile
from .core.choices import Precision
from .core.cpu import cpu_flags
from .core.digest import graph_digest, uses_external_data
from .core.errors import ConfigError, ModelFileError, ProviderError
from .core.files import atomic_output, check_memory
from .core.numbers import is_whole_number
from .cuda import diagnose_cuda, preload_cuda_libraries
from .openvino import OpenVinoOptions
from .providers import (
    CPU,
    PROVIDERS,
    GpuOptions,
    ModelInput,
    ProviderContext,
    ProviderKind,
    ProviderPlan,
    ProviderSpec,
    is_gpu,
    missing_provider_message,
    parse_provider,
    parse_providers,
    plan_providers,
    sha256_hex,
    validate_gpu_options,
)

#: Files up to this size have their weight digest checked by ``verify_weights="auto"``.
AUTO_VERIFY_BYTES = 64 * 1024 * 1024

GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class RuntimeConfig:
    """How a :class:`Classifier` runs its model; every field is also a ``Classifier`` keyword.

    ``optimized_model_dir`` caches onnxruntime's optimised graph per model and level (CPU only:
    GPU providers compile nodes that cannot be saved), so the next cold start skips optimisation.
    ``verify_weights`` checks the graph against the digest ``nin-export`` recorded in the file:
    ``"auto"`` for files up to :data:`AUTO_VERIFY_BYTES` (NiN: 8 ms; VGG-11's 515 MB would add
    0.9 s to a 2.8 s load, measured), ``True`` always, ``False`` never. ``precision`` picks the
    model of a bundle folder (``fp32``, ``int8``, ``fp16``; default ``fp32``). ``openvino`` holds
    the OpenVINO provider's device, precision hint, streams, threads and compiled-model cache.
    ``verify_key`` (a PEM public key file) loads a bundle folder only when its signature is that key's
    and every file is as signed (see :mod:`nin_edge.runtime.signing`; needs the ``sign`` extra).
    """

    provider: str | tuple[ProviderSpec, ...] = "auto"
    fallback: bool = False
    threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: str = "all"
    optimized_model_dir: str | None = None
    spinning: bool = True
    max_batch: int = 32
    device_id: int = 0
    cudnn_conv_algo_search: str = "HEURISTIC"
    fp16: bool = False
    engine_cache_dir: str | None = None
    verify_weights: bool | str = "auto"
    precision: str | None = None
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    verify_key: str | None = None

    def validate(self) -> None:
        """Refuse bad values before a session is built."""
        parse_providers(self.provider)
        for name in ("threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and not is_whole_number(value, minimum=1):
                raise ConfigError(f"{name} must be a positive whole number or None, got {value!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ConfigError(
                f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION)}, got {self.graph_optimization!r}"
            )
        validate_gpu_options(self.gpu)
        if self.precision is not None:
            Precision.check(self.precision, "precision")
        if not isinstance(self.openvino, OpenVinoOptions):
            raise ConfigError(f"openvino must be an OpenVinoOptions, got {type(self.openvino).__name__}")
        self.openvino.validate()
        if self.verify_weights not in (True, False, "auto"):
            raise ConfigError(f"verify_weights must be True, False or 'auto', got {self.verify_weights!r}")
        if self.verify_key is not None and not isinstance(self.verify_key, (str, os.PathLike)):
            raise ConfigError(f"verify_key must be the path of a PEM public key, got {type(self.verify_key).__name__}")

    @property
    def gpu(self) -> GpuOptions:
        return GpuOptions(
            device_id=self.device_id,
            cudnn_conv_algo_search=self.cudnn_conv_algo_search,
            fp16=self.fp16,
            max_batch=self.max_batch,
            engine_cache_dir=self.engine_cache_dir,
        )


class ModelSource:
    """What onnxruntime loads (a path, passed as is so no copy is made, or bytes) and its name."""

    def __init__(self, model: str | os.PathLike | bytes) -> None:
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.data: str | bytes = bytes(model)
            self.name = "<bytes>"
            return
        if not isinstance(model, (str, os.PathLike)):
            raise ModelFileError(f"model must be a path or the bytes of an ONNX file, got {type(model).__name__}")
        path = Path(model)
        if not path.is_file():
            raise ModelFileError(f"model file '{path}' does not exist or is not a file")
        if not os.access(path, os.R_OK):
            raise ModelFileError(f"cannot read model file '{path}': permission denied")
        self.data = self.name = str(path)

    def read(self) -> bytes:
        """The model's bytes, read only when a check or a cache needs them and not kept: a
        Classifier holding them would double its memory for a large model."""
        if isinstance(self.data, bytes):
            return self.data
        check_memory(self.size, f"reading model '{self.name}' ({self.size:,} bytes)")
        return Path(self.data).read_bytes()

    @property
    def size(self) -> int:
        """The model's size in bytes, without reading it."""
        return len(self.data) if isinstance(self.data, bytes) else os.stat(self.data).st_size

    @property
    def folder(self) -> Path | None:
        """The model file's folder, where weights stored as external data lie (None for bytes)."""
        return None if isinstance(self.data, bytes) else Path(self.data).parent

    @functools.cached_property
    def sha256(self) -> str:
        """sha256 of the model: the key of the engine and optimised-model caches. For a model whose
        weights lie in external files it covers those too (through the graph digest)."""
        data = self.read()
        key = sha256_hex(data)
        if uses_external_data(data):
            key = sha256_hex((key + graph_digest(data, self.name, self.folder)).encode())
        return key


@dataclass(frozen=True)
class LoadedSession:
    """A session with the providers onnxruntime actually enabled, and any fallback taken."""

    session: ort.InferenceSession
    plan: ProviderPlan
    providers: tuple[str, ...]
    fallback_reason: str | None


def load_session(source: ModelSource, config: RuntimeConfig, *, profile_prefix: str | None = None) -> LoadedSession:
    """Plan providers, build the session and check that the wanted provider is the one in use.

    ``profile_prefix`` turns on onnxruntime's profiler, writing its trace there (see
    :mod:`nin_edge.runtime.profiling`).
    """
    available = list(ort.get_available_providers())
    ctx = ProviderContext(
        gpu=config.gpu,
        openvino=config.openvino,
        # The TensorRT profile needs the input's shape, read only when TensorRT is planned.
        model_input=lambda: _model_input(source),
        ort_version=ort.__version__,
    )
    builders: dict[str, dict | Callable[[], dict]] = {e.name: functools.partial(e.options, ctx) for e in PROVIDERS}
    flags = cpu_flags()
    entries = parse_providers(config.provider)
    candidates = [e for e in PROVIDERS if e.in_auto(flags)] if entries is None else list(entries)
    why_missing = {}
    for entry in candidates:
        # A plugin provider is listed only once its probe has registered it and found a device.
        if entry.kind is ProviderKind.PLUGIN and entry.name not in available:
            reason = entry.probe(ort, entry, ctx)
            if reason is None:
                available.insert(available.index(CPU), entry.name)
            else:
                why_missing[entry.name] = reason
    plan = plan_providers(
        config.provider,
        available,
        fallback=config.fallback,
        option_builder=builders,
        cpu_flags=flags,
        why_missing=why_missing,
    )
    if any(is_gpu(name) for name in plan.names):
        preload_cuda_libraries(ort)
    cache = _optimized_cache(source, config, plan)
    session = cache.load(config, plan) if cache is not None and cache.usable() else None
    if session is None:
        if cache is None:
            so = _session_options(config, profile_prefix=profile_prefix)
            session = _new_session(source.data, source.name, so, plan, config)
        else:
            with atomic_output(cache.path) as tmp:
                session = _new_session(source.data, source.name, _session_options(config, write_to=tmp), plan, config)
            cache.record_digest()
    providers = tuple(session.get_providers())
    return LoadedSession(session, plan, providers, _fallback(plan, providers, config.fallback))


def _fallback(plan: ProviderPlan, providers: tuple[str, ...], allowed: bool) -> str | None:
    """onnxruntime drops a GPU provider silently when its libraries fail to load; we do not."""
    wanted = plan.names[0]
    if wanted in providers:
        return plan.fallback_reason
    why = diagnose_cuda(ort) if is_gpu(wanted) else missing_provider_message(wanted, ort.get_available_providers())
    message = f"onnxruntime did not enable {wanted}; the session runs on {', '.join(providers)}: {why}"
    if not allowed:
        raise ProviderError(message)
    return message


def _new_session(
    data: str | bytes, name: str, so: ort.SessionOptions, plan: ProviderPlan, config: RuntimeConfig
) -> ort.InferenceSession:
    entry = parse_provider(plan.names[0])
    try:
        if entry.devices is not None:
            # Plugin providers are added per device; onnxruntime then places what they leave on the CPU.
            devices = entry.devices(ort, ProviderContext(openvino=config.openvino))
            so.add_provider_for_devices(devices, dict(plan.providers[0][1]))
            return ort.InferenceSession(data, sess_options=so)
        return ort.InferenceSession(
            data,
            sess_options=so,
            providers=[provider for provider, _ in plan.providers],
            provider_options=[opts for _, opts in plan.providers],
        )
    except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"onnxruntime cannot load model '{name}': {first}") from None


def _session_options(
    config: RuntimeConfig,
    *,
    write_to: Path | None = None,
    optimized: bool = False,
    profile_prefix: str | None = None,
) -> ort.SessionOptions:
    """Options for a session; ``write_to`` saves the optimised graph there, ``optimized`` loads one."""
    so = ort.SessionOptions()
    if config.threads:
        so.intra_op_num_threads = config.threads
    if config.inter_op_threads:
        so.inter_op_num_threads = config.inter_op_threads
    so.graph_optimization_level = GRAPH_OPTIMIZATION["disable" if optimized else config.graph_optimization]
    if write_to is not None:
        so.optimized_model_filepath = str(write_to)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spinning else "0")
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


class OptimizedModelCache(DigestedFile):
    """onnxruntime's optimised graph of one model in ``optimized_model_dir``.

    The file is keyed by the model's sha256, the optimisation level and the onnxruntime version;
    it is written atomically, its own sha256 is recorded beside it (``.sha256``), and it is used
    only when that digest matches. A damaged entry (a kill during the first load, a flipped byte)
    is removed and rebuilt with a warning, never used.
    """

    def __init__(self, folder: Path, model_sha256: str, level: str) -> None:
        super().__init__(
            folder / f"{model_sha256[:16]}-{level}-ort{ort.__version__}.onnx",
            "optimized-model cache entry '{path}' is damaged ({why}); rebuilding it",
        )

    def load(self, config: RuntimeConfig, plan: ProviderPlan) -> ort.InferenceSession | None:
        """A session from the cached graph, or None (entry discarded) if onnxruntime refuses it."""
        try:
            optimized = _session_options(config, optimized=True)
            return _new_session(str(self.path), str(self.path), optimized, plan, config)
        except ModelFileError as exc:
            self.discard(str(exc))
            return None


def _optimized_cache(source: ModelSource, config: RuntimeConfig, plan: ProviderPlan) -> OptimizedModelCache | None:
    """The optimised-graph cache entry for this model, level and onnxruntime (None without a folder)."""
    if not config.optimized_model_dir:
        return None
    if plan.names != [CPU]:
        raise ConfigError(
            "optimized_model_dir works with the CPU provider only; GPU providers compile their own graphs"
        )
    folder = Path(config.optimized_model_dir)
    if not folder.is_dir():
        raise ConfigError(f"optimized model folder '{folder}' does not exist; create it first")
    return OptimizedModelCache(folder, source.sha256, config.graph_optimization)


def plain_session(
    model: str | os.PathLike | bytes,
    *,
    provider: str = "cpu",
    options: dict | None = None,
    optimize: bool = True,
    cpu_fallback: bool = True,
    unfused_qdq: bool = False,
) -> ort.InferenceSession:
    """A bare onnxruntime session for the toolkit's own checks (parity, ONNX against ORT format,
    a metadata probe, node placement, the INT8 gate): one provider, no planning, verification or caches.

    ``optimize=False`` turns graph optimisation off (a probe that only reads the inputs);
    ``cpu_fallback=False`` makes onnxruntime refuse a graph the provider cannot take whole;
    ``unfused_qdq=True`` leaves a QDQ model's Q/DQ nodes unfused, so each quantized operator runs as
    float math on the dequantized values, without this CPU's integer kernels (and their AVX2 saturation). A
    model onnxruntime cannot load is a :class:`ModelFileError` naming its first line.
    """
    name = parse_provider(provider).name
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = GRAPH_OPTIMIZATION["disable"]
    if not cpu_fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if unfused_qdq:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    data = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(data, sess_options=so, providers=[(name, dict(options or {}))])
    except Exception as exc:  # onnxruntime's own types (InvalidProtobuf, Fail, ...)
        label = "<bytes>" if isinstance(model, bytes) else str(model)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"onnxruntime cannot load model '{label}': {first}") from None


def _model_input(source: ModelSource) -> ModelInput:
    """The model's input name and (C, H, W), read by a light CPU session, for TensorRT's batch profile.

    TensorRT needs the input's name and shape before its session exists; onnxruntime has no way
    to read them without a session, so a CPU one with optimisation off reads them (milliseconds).
    """
    probe = plain_session(source.data, optimize=False)
    inp = probe.get_inputs()[0]
    dims = inp.shape[1:]
    if len(dims) != 3 or not all(isinstance(d, int) for d in dims):
        raise ModelFileError(f"model '{source.name}' input {inp.name!r} has shape {inp.shape}; expected (N,C,H,W)")
    return ModelInput(inp.name, (dims[0], dims[1], dims[2]), source.sha256)
