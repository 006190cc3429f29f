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
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from .core.errors import ConfigError, ModelFileError, ProviderError
from .cuda import diagnose_cuda, preload_cuda_libraries
from .providers import (
    CPU,
    CUDA,
    TENSORRT,
    GpuOptions,
    ProviderPlan,
    ProviderSpec,
    cuda_options,
    missing_provider_message,
    plan_providers,
    sha256_hex,
    tensorrt_options,
    validate_gpu_options,
)

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

    def validate(self) -> None:
        """Refuse bad values before a session is built."""
        for name in ("threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{name} must be a positive whole number or None, got {value!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ConfigError(
                f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION)}, got {self.graph_optimization!r}"
            )
        validate_gpu_options(self.gpu)

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

    @functools.cached_property
    def sha256(self) -> str:
        """sha256 of the model: the key of the engine and optimised-model caches.

        Computed only when a cache needs it, since hashing costs cold-start time.
        """
        data = self.data if isinstance(self.data, bytes) else Path(self.data).read_bytes()
        return sha256_hex(data)


@dataclass(frozen=True)
class LoadedSession:
    """A session with the providers onnxruntime actually enabled, and any fallback taken."""

    session: ort.InferenceSession
    plan: ProviderPlan
    providers: tuple[str, ...]
    fallback_reason: str | None


def load_session(source: ModelSource, config: RuntimeConfig) -> LoadedSession:
    """Plan providers, build the session and check that the wanted provider is the one in use."""
    available = ort.get_available_providers()
    builders: dict[str, dict | Callable[[], dict]] = {
        CUDA: cuda_options(config.gpu),
        # The TensorRT profile needs the input's shape, read only when TensorRT is planned.
        TENSORRT: lambda: _tensorrt_options(source, config),
    }
    plan = plan_providers(config.provider, available, fallback=config.fallback, option_builder=builders)
    if CUDA in plan.names or TENSORRT in plan.names:
        preload_cuda_libraries(ort)
    optimized_path, load_optimized = _optimized_cache(source, config, plan)
    try:
        session = ort.InferenceSession(
            str(optimized_path) if load_optimized else source.data,
            sess_options=_session_options(config, optimized_path, load_optimized),
            providers=[name for name, _ in plan.providers],
            provider_options=[opts for _, opts in plan.providers],
        )
    except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"onnxruntime cannot load model '{source.name}': {first}") from None
    providers = tuple(session.get_providers())
    return LoadedSession(session, plan, providers, _fallback(plan, providers, config.fallback))


def _fallback(plan: ProviderPlan, providers: tuple[str, ...], allowed: bool) -> str | None:
    """onnxruntime drops a GPU provider silently when its libraries fail to load; we do not."""
    wanted = plan.names[0]
    if wanted in providers:
        return plan.fallback_reason
    why = (
        diagnose_cuda(ort)
        if wanted in (CUDA, TENSORRT)
        else missing_provider_message(wanted, ort.get_available_providers())
    )
    message = f"onnxruntime did not enable {wanted}; the session runs on {', '.join(providers)}: {why}"
    if not allowed:
        raise ProviderError(message)
    return message


def _session_options(config: RuntimeConfig, optimized_path: Path | None, load_optimized: bool) -> ort.SessionOptions:
    so = ort.SessionOptions()
    if config.threads:
        so.intra_op_num_threads = config.threads
    if config.inter_op_threads:
        so.inter_op_num_threads = config.inter_op_threads
    so.graph_optimization_level = GRAPH_OPTIMIZATION["disable" if load_optimized else config.graph_optimization]
    if optimized_path is not None and not load_optimized:
        so.optimized_model_filepath = str(optimized_path)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spinning else "0")
    return so


def _optimized_cache(source: ModelSource, config: RuntimeConfig, plan: ProviderPlan) -> tuple[Path | None, bool]:
    """The optimised-graph cache file for this model, level and onnxruntime, and whether it exists."""
    if not config.optimized_model_dir:
        return None, False
    if plan.names != [CPU]:
        raise ConfigError(
            "optimized_model_dir works with the CPU provider only; GPU providers compile their own graphs"
        )
    folder = Path(config.optimized_model_dir)
    if not folder.is_dir():
        raise ConfigError(f"optimized model folder '{folder}' does not exist; create it first")
    path = folder / f"{source.sha256[:16]}-{config.graph_optimization}-ort{ort.__version__}.onnx"
    return path, path.is_file()


def _tensorrt_options(source: ModelSource, config: RuntimeConfig) -> dict:
    """TensorRT's options, with a batch profile for the model's input read by a light CPU session.

    TensorRT needs the input's name and shape before its session exists; onnxruntime has no way
    to read them without a session, so a CPU one with optimisation off reads them (milliseconds).
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = GRAPH_OPTIMIZATION["disable"]
    try:
        probe = ort.InferenceSession(source.data, sess_options=so, providers=[CPU])
    except Exception as exc:  # onnxruntime's own types
        raise ModelFileError(f"onnxruntime cannot load model '{source.name}': {str(exc).splitlines()[0]}") from None
    inp = probe.get_inputs()[0]
    dims = inp.shape[1:]
    if len(dims) != 3 or not all(isinstance(d, int) for d in dims):
        raise ModelFileError(f"model '{source.name}' input {inp.name!r} has shape {inp.shape}; expected (N,C,H,W)")
    return tensorrt_options(
        config.gpu,
        input_name=inp.name,
        chw=(dims[0], dims[1], dims[2]),
        model_sha256=source.sha256,
        ort_version=ort.__version__,
    )
