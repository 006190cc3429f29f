"""Choosing onnxruntime execution providers and building their options.

Pure functions over plain data, so the CUDA and TensorRT options can be built and tested on a
machine without a GPU; only :class:`~nin_edge.runtime.Classifier` hands them to onnxruntime.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .core.choices import Choice
from .core.errors import ConfigError, ProviderError
from .cuda import GPU_INSTALL, installed_onnxruntime_distributions
from .openvino import INSTALL as OPENVINO_INSTALL
from .openvino import OPENVINO

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT, "openvino": OPENVINO, "ov": OPENVINO}
AUTO_ORDER = (TENSORRT, CUDA, CPU)


class CudnnSearch(Choice):
    """How the CUDA provider picks convolution kernels; EXHAUSTIVE times them once per shape."""

    HEURISTIC = "HEURISTIC"
    EXHAUSTIVE = "EXHAUSTIVE"
    DEFAULT = "DEFAULT"


_HOW_TO_GET = {
    CUDA: "on a machine with an NVIDIA GPU install onnxruntime-gpu instead of onnxruntime "
    "(pip uninstall -y onnxruntime && pip install 'nin-edge[gpu]'; CUDA 13 and cuDNN 9 come as wheels)",
    TENSORRT: "install onnxruntime-gpu ('nin-edge[gpu]') and the TensorRT libraries (pip install tensorrt-cu13) "
    "on a machine with an NVIDIA GPU",
    OPENVINO: OPENVINO_INSTALL,
}

ProviderSpec = str | tuple[str, dict]


@dataclass(frozen=True)
class GpuOptions:
    """What the CUDA and TensorRT providers are given."""

    device_id: int = 0
    cudnn_conv_algo_search: str = "HEURISTIC"
    fp16: bool = False
    max_batch: int = 32
    engine_cache_dir: str | None = None


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to ask onnxruntime for, in order, and any fallback already decided."""

    requested: str
    providers: tuple[tuple[str, dict], ...]
    fallback_reason: str | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]


def canonical_name(name: str) -> str:
    """Map ``cpu``/``cuda``/``tensorrt`` (any case) to onnxruntime's names; pass full names through."""
    return ALIASES.get(name.lower(), name) if isinstance(name, str) else name


def missing_provider_message(name: str, available: Sequence[str]) -> str:
    """Say which provider is missing, which ones this build has, and how to get it."""
    how = _HOW_TO_GET.get(name, "use an onnxruntime build that includes it")
    dists = installed_onnxruntime_distributions()
    if name in (CUDA, TENSORRT) and len(dists) > 1:
        how = f"{' and '.join(dists)} are installed together and overwrite each other; keep one: {GPU_INSTALL}"
    return (
        f"execution provider {name} is not available in this onnxruntime build "
        f"(available: {', '.join(available)}); {how}"
    )


def trt_library_version() -> str:
    """The installed TensorRT wheel's version, or "unknown" when TensorRT came from elsewhere."""
    from importlib import metadata as _dist  # only TensorRT sessions need it; keep it off the cold start

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-libs", "tensorrt-cu12-libs"):
        try:
            return _dist.version(dist)
        except _dist.PackageNotFoundError:
            continue
    return "unknown"


def engine_cache_path(cache_dir: str | os.PathLike, model_sha256: str, gpu: GpuOptions, ort_version: str) -> Path:
    """A cache folder per model, precision, batch profile and library versions.

    TensorRT engines are only valid for the exact model, precision, optimisation profile, GPU and
    TensorRT version they were built with, so all of these go into the key; a second start with
    the same key reuses the engine instead of rebuilding it (minutes on small GPUs).
    """
    precision = "fp16" if gpu.fp16 else "fp32"
    versions = f"ort{ort_version}-trt{trt_library_version()}"
    key = f"{model_sha256[:16]}-{precision}-b{gpu.max_batch}-dev{gpu.device_id}-{versions}"
    return Path(cache_dir) / key


def cuda_options(gpu: GpuOptions) -> dict:
    """Options for the CUDA provider."""
    return {"device_id": str(gpu.device_id), "cudnn_conv_algo_search": gpu.cudnn_conv_algo_search}


def tensorrt_options(
    gpu: GpuOptions, *, input_name: str, chw: tuple[int, int, int], model_sha256: str, ort_version: str
) -> dict:
    """Options for the TensorRT provider: batch profile 1..max_batch, FP16, engine cache."""
    c, h, w = chw
    opt = max(1, gpu.max_batch // 2)
    options = {
        "device_id": str(gpu.device_id),
        "trt_fp16_enable": "True" if gpu.fp16 else "False",
        "trt_profile_min_shapes": f"{input_name}:1x{c}x{h}x{w}",
        "trt_profile_opt_shapes": f"{input_name}:{opt}x{c}x{h}x{w}",
        "trt_profile_max_shapes": f"{input_name}:{gpu.max_batch}x{c}x{h}x{w}",
    }
    if gpu.engine_cache_dir:
        path = str(engine_cache_path(gpu.engine_cache_dir, model_sha256, gpu, ort_version))
        options.update(
            {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": path,
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": path,
            }
        )
    return options


def validate_gpu_options(gpu: GpuOptions) -> None:
    """Refuse GPU options that onnxruntime would reject late or ignore."""
    if isinstance(gpu.device_id, bool) or not isinstance(gpu.device_id, int) or gpu.device_id < 0:
        raise ConfigError(f"device_id must be a whole number >= 0, got {gpu.device_id!r}")
    CudnnSearch.check(gpu.cudnn_conv_algo_search, "cudnn_conv_algo_search")
    if isinstance(gpu.max_batch, bool) or not isinstance(gpu.max_batch, int) or gpu.max_batch <= 0:
        raise ConfigError(f"max_batch must be a positive whole number, got {gpu.max_batch!r}")


def plan_providers(
    request: str | Sequence[ProviderSpec],
    available: Sequence[str],
    *,
    fallback: bool,
    option_builder: Mapping[str, dict | Callable[[], dict]] | None = None,
    prefer_openvino: bool = False,
    why_missing: Mapping[str, str] | None = None,
) -> ProviderPlan:
    """Decide which providers to request from onnxruntime.

    ``request`` is ``auto``, ``cpu``, ``cuda``, ``tensorrt``, or a list of provider names (aliases
    allowed) or ``(name, options)`` pairs. ``option_builder`` maps provider names to the options (or to a
    function that builds them, called only when that provider is planned without options of its own)
    to give them unless the request carries its own. A provider that this build lacks is an error
    naming what is available, or with ``fallback`` a recorded fallback to the next one. CPU is
    always appended last, because onnxruntime places nodes that a GPU provider cannot take there.
    ``auto`` takes OpenVINO before the CPU provider when ``prefer_openvino`` (the measured CPU rule)
    holds and OpenVINO is available. ``why_missing`` overrides the message for a missing provider.
    """
    builders = option_builder or {}

    def options_for(name: str) -> dict:
        built = builders.get(name, {})
        return dict(built() if callable(built) else built)

    if isinstance(request, str):
        key = request.lower()
        if key == "auto":
            order = (TENSORRT, CUDA, OPENVINO, CPU) if prefer_openvino else AUTO_ORDER
            chosen = [p for p in order if p in available]
            return ProviderPlan(
                requested="auto",
                providers=tuple((p, options_for(p)) for p in chosen),
            )
        if key not in ALIASES and not request.endswith("ExecutionProvider"):
            raise ConfigError(
                f"provider {request!r} is not known; expected auto, cpu, cuda, tensorrt, openvino or an onnxruntime "
                "provider name"
            )
        specs: list[ProviderSpec] = [canonical_name(request)]
        requested_label = request
    else:
        specs = list(request)
        if not specs:
            raise ConfigError("the provider list is empty; give at least one provider, e.g. ['cpu']")
        requested_label = ",".join(s if isinstance(s, str) else s[0] for s in specs)

    wanted: list[tuple[str, dict | None]] = []
    for spec in specs:
        if isinstance(spec, str):
            name, opts = canonical_name(spec), None
        elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], dict):
            name, opts = canonical_name(spec[0]), dict(spec[1])
        else:
            raise ConfigError(f"provider entry {spec!r} is neither a name nor a (name, options) pair")
        wanted.append((name, opts))

    missing = [name for name, _ in wanted if name not in available]
    reason = None
    if missing:
        message = (why_missing or {}).get(missing[0]) or missing_provider_message(missing[0], available)
        if not fallback:
            raise ProviderError(message)
        wanted = [(n, o) for n, o in wanted if n in available]
        reason = message
    # Options are built only for the providers that stay, so an expensive builder (the TensorRT
    # input probe) never runs for a provider this build lacks.
    planned = [(n, o if o is not None else options_for(n)) for n, o in wanted]
    if CPU not in [n for n, _ in planned]:
        planned.append((CPU, {}))
    if reason:
        reason += f"; falling back to {planned[0][0]}"
    return ProviderPlan(requested=requested_label, providers=tuple(planned), fallback_reason=reason)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of a serialised model (the engine and optimised-model cache key)."""
    return hashlib.sha256(data).hexdigest()
