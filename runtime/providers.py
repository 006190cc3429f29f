"""The provider catalogue: every onnxruntime execution provider nin-edge knows, in one table.

:data:`PROVIDERS` holds each provider's onnxruntime name, the spellings commands accept, its kind
(cpu / gpu / plugin), how to install it, its options builder and its availability probe;
:func:`parse_provider` is the one place a provider name is parsed (every config's ``validate()``
and every command ask it), and :attr:`Provider.is_gpu` the one "is this a GPU provider" test.
Adding a provider is one :class:`Provider` entry. Planning and options are pure functions over
plain data, so the CUDA and TensorRT options can be built and tested on a machine without a GPU;
only :mod:`~nin_edge.runtime.session` hands them to onnxruntime.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.choices import Choice
from .core.errors import ConfigError, ProviderError
from .core.numbers import is_whole_number
from .cuda import GPU_INSTALL, installed_onnxruntime_distributions
from .openvino import INSTALL as OPENVINO_INSTALL
from .openvino import OPENVINO, OpenVinoOptions, prefers_openvino
from .openvino import devices as openvino_devices
from .openvino import register as register_openvino

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


class CudnnSearch(Choice):
    """How the CUDA provider picks convolution kernels; EXHAUSTIVE times them once per shape."""

    HEURISTIC = "HEURISTIC"
    EXHAUSTIVE = "EXHAUSTIVE"
    DEFAULT = "DEFAULT"


ProviderSpec = str | tuple[str, dict]


@dataclass(frozen=True)
class GpuOptions:
    """What the CUDA and TensorRT providers are given."""

    device_id: int = 0
    cudnn_conv_algo_search: str = "HEURISTIC"
    fp16: bool = False
    max_batch: int = 32
    engine_cache_dir: str | None = None


class ProviderKind(Choice):
    """What a provider runs on: the CPU, an NVIDIA GPU, a plugin library (its own device list), a
    remote endpoint (runs no nodes here), or an onnxruntime provider nin-edge has no entry for
    (passed through as given)."""

    CPU = "cpu"
    GPU = "gpu"
    PLUGIN = "plugin"
    REMOTE = "remote"
    OTHER = "other"


@dataclass(frozen=True)
class ModelInput:
    """The model's input as the TensorRT profile needs it: name, (C, H, W), and the model's sha256."""

    name: str
    chw: tuple[int, int, int]
    sha256: str


@dataclass(frozen=True)
class ProviderContext:
    """What the options builders and availability probes of the catalogue read.

    ``model_input`` is called only by a builder that needs the model's input (TensorRT), so the
    probe session it costs is paid only when that provider is planned.
    """

    gpu: GpuOptions = field(default_factory=GpuOptions)
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    model_input: Callable[[], ModelInput] | None = None
    ort_version: str = "unknown"


def _no_options(_ctx: ProviderContext) -> dict:
    return {}


def _listed(ort: Any, entry: Provider, _ctx: ProviderContext) -> str | None:
    """The probe of a provider compiled into onnxruntime: listed or not."""
    available = list(ort.get_available_providers())
    return None if entry.name in available else missing_provider_message(entry.name, available)


@dataclass(frozen=True)
class Provider:
    """One execution provider of the catalogue.

    ``name`` is onnxruntime's name; ``short`` and ``aliases`` are the spellings commands accept (any
    case, like ``name``); ``kind`` says what it runs on; ``install`` says how to get it;
    ``options`` builds its onnxruntime options from a :class:`ProviderContext`; ``probe`` returns
    None when it can run here, else why not (a plugin is registered by its probe); ``in_auto``
    says whether ``auto`` considers it on a machine with the given CPU flags; ``devices`` (plugins
    only) gives the ``OrtEpDevice`` entries a session adds it for.
    """

    name: str
    short: str
    kind: ProviderKind
    aliases: tuple[str, ...] = ()
    install: str = "use an onnxruntime build that includes it"
    options: Callable[[ProviderContext], dict] = _no_options
    probe: Callable[[Any, Provider, ProviderContext], str | None] = _listed
    in_auto: Callable[[frozenset[str]], bool] = lambda _flags: True
    devices: Callable[[Any, ProviderContext], list[Any]] | None = None

    @property
    def is_gpu(self) -> bool:
        """Whether it runs on an NVIDIA GPU (device memory, IO binding on ``cuda``, CUDA libraries)."""
        return self.kind is ProviderKind.GPU

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every accepted spelling, lower case."""
        return (self.name.lower(), self.short, *self.aliases)


def _tensorrt(ctx: ProviderContext) -> dict:
    if ctx.model_input is None:
        raise ConfigError("the TensorRT options need the model's input; give ProviderContext.model_input")
    model = ctx.model_input()
    return tensorrt_options(
        ctx.gpu, input_name=model.name, chw=model.chw, model_sha256=model.sha256, ort_version=ctx.ort_version
    )


def _openvino_devices(ort: Any, ctx: ProviderContext) -> list[Any]:
    return openvino_devices(ort, ctx.openvino.device_type)


def _openvino_probe(ort: Any, _entry: Provider, ctx: ProviderContext) -> str | None:
    # A plugin provider exists only once registered and only with a device to offer.
    try:
        register_openvino(ort)
        _openvino_devices(ort, ctx)
    except ProviderError as exc:
        return str(exc)
    return None


#: The catalogue, in the order ``auto`` tries them. Adding a provider is one entry here.
PROVIDERS: tuple[Provider, ...] = (
    Provider(
        TENSORRT,
        "tensorrt",
        ProviderKind.GPU,
        aliases=("trt",),
        install="install onnxruntime-gpu ('nin-edge[gpu]') and the TensorRT libraries (pip install tensorrt-cu13) "
        "on a machine with an NVIDIA GPU",
        options=_tensorrt,
    ),
    Provider(
        CUDA,
        "cuda",
        ProviderKind.GPU,
        install="on a machine with an NVIDIA GPU install onnxruntime-gpu instead of onnxruntime "
        "(pip uninstall -y onnxruntime && pip install 'nin-edge[gpu]'; CUDA 13 and cuDNN 9 come as wheels)",
        options=lambda ctx: cuda_options(ctx.gpu),
    ),
    Provider(
        OPENVINO,
        "openvino",
        ProviderKind.PLUGIN,
        aliases=("ov",),
        install=OPENVINO_INSTALL,
        options=lambda ctx: ctx.openvino.provider_options(),
        probe=_openvino_probe,
        devices=_openvino_devices,
        in_auto=prefers_openvino,
    ),
    # onnxruntime's default wheel lists Azure, which forwards requests to a cloud endpoint:
    # never planned by auto, and not a device nin-inspect measures.
    Provider("AzureExecutionProvider", "azure", ProviderKind.REMOTE, in_auto=lambda _flags: False),
    Provider(CPU, "cpu", ProviderKind.CPU),
)

_BY_SPELLING = {spelling: entry for entry in PROVIDERS for spelling in entry.spellings}
#: What the error for an unknown name lists.
_SHORT = [e.short for e in PROVIDERS if e.kind is not ProviderKind.REMOTE]
KNOWN = f"auto, {_SHORT[-1]}, {', '.join(_SHORT[:-1])} or an onnxruntime provider name"


def parse_provider(name: object, *, expected: str = KNOWN.removeprefix("auto, ")) -> Provider:
    """The catalogue entry for ``name`` (any case; short name, alias or onnxruntime's name).

    The one place provider names are parsed. A full onnxruntime name that is not in the catalogue
    (``DmlExecutionProvider``) is passed through as a :attr:`ProviderKind.OTHER` entry; anything
    else is a :class:`ConfigError` naming what is accepted.
    """
    if not isinstance(name, str):
        raise ConfigError(f"provider must be a name such as 'cpu', got {name!r}")
    entry = _BY_SPELLING.get(name.strip().lower())
    if entry is not None:
        return entry
    if name.endswith("ExecutionProvider"):
        return Provider(name, name, ProviderKind.OTHER)
    raise ConfigError(f"provider {name!r} is not known; expected {expected}")


def parse_providers(request: object) -> tuple[Provider, ...] | None:
    """Parse a provider request: ``auto`` (any case; gives None), one name, or a sequence of
    names or ``(name, options)`` pairs, every name through :func:`parse_provider`."""
    if isinstance(request, str):
        return None if request.strip().lower() == "auto" else (parse_provider(request, expected=KNOWN),)
    if not isinstance(request, (list, tuple)):
        raise ConfigError(f"provider must be a name or a list of names, got {request!r}")
    if not request:
        raise ConfigError("the provider list is empty; give at least one provider, e.g. ['cpu']")
    return tuple(parse_provider(_spec_name(spec)) for spec in request)


def _spec_name(spec: object) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
        return spec[0]
    raise ConfigError(f"provider entry {spec!r} is neither a name nor a (name, options) pair")


def usable_plugins(ort: Any, ctx: ProviderContext | None = None) -> list[str]:
    """The plugin providers that can run here (onnxruntime lists them only once registered)."""
    ctx = ctx or ProviderContext()
    return [e.name for e in PROVIDERS if e.kind is ProviderKind.PLUGIN and e.probe(ort, e, ctx) is None]


def short_label(name: str) -> str:
    """onnxruntime's name without its ``ExecutionProvider`` suffix (``CPU``, ``Tensorrt``), as cards print it."""
    return name.replace("ExecutionProvider", "")


def is_gpu(name: str) -> bool:
    """Whether the provider ``name`` (any accepted spelling) runs on an NVIDIA GPU."""
    return parse_provider(name).is_gpu


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
    """onnxruntime's name for ``name`` (any accepted spelling)."""
    return parse_provider(name).name


def missing_provider_message(name: str, available: Sequence[str]) -> str:
    """Say which provider is missing, which ones this build has, and how to get it."""
    entry = parse_provider(name)
    how = entry.install
    dists = installed_onnxruntime_distributions()
    if entry.is_gpu and len(dists) > 1:
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
    if not is_whole_number(gpu.device_id, minimum=0):
        raise ConfigError(f"device_id must be a whole number >= 0, got {gpu.device_id!r}")
    CudnnSearch.check(gpu.cudnn_conv_algo_search, "cudnn_conv_algo_search")
    if not is_whole_number(gpu.max_batch, minimum=1):
        raise ConfigError(f"max_batch must be a positive whole number, got {gpu.max_batch!r}")


def plan_providers(
    request: str | Sequence[ProviderSpec],
    available: Sequence[str],
    *,
    fallback: bool,
    option_builder: Mapping[str, dict | Callable[[], dict]] | None = None,
    cpu_flags: Iterable[str] = (),
    why_missing: Mapping[str, str] | None = None,
) -> ProviderPlan:
    """Decide which providers to request from onnxruntime.

    ``request`` is ``auto``, ``cpu``, ``cuda``, ``tensorrt``, or a list of provider names (aliases
    allowed) or ``(name, options)`` pairs. ``option_builder`` maps provider names to the options (or to a
    function that builds them, called only when that provider is planned without options of its own)
    to give them unless the request carries its own. A provider that this build lacks is an error
    naming what is available, or with ``fallback`` a recorded fallback to the next one. CPU is
    always appended last, because onnxruntime places nodes that a GPU provider cannot take there.
    ``auto`` takes the catalogue's providers in order, each that is available and whose
    ``in_auto`` rule holds for ``cpu_flags`` (OpenVINO: the measured CPU rule). ``why_missing``
    overrides the message for a missing provider.
    """
    builders = option_builder or {}

    def options_for(name: str) -> dict:
        built = builders.get(name, {})
        return dict(built() if callable(built) else built)

    entries = parse_providers(request)
    if entries is None:
        flags = frozenset(cpu_flags)
        chosen = [e.name for e in PROVIDERS if e.name in available and e.in_auto(flags)]
        return ProviderPlan(requested="auto", providers=tuple((p, options_for(p)) for p in chosen))
    if isinstance(request, str):
        specs: list[ProviderSpec] = [request]
        requested_label = request
    else:
        specs = list(request)
        requested_label = ",".join(s if isinstance(s, str) else s[0] for s in specs)
    wanted: list[tuple[str, dict | None]] = [
        (entry.name, None if isinstance(spec, str) else dict(spec[1]))
        for entry, spec in zip(entries, specs, strict=True)
    ]

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
