"""Intel's OpenVINO execution provider, as a plugin for the stock onnxruntime wheel.

``pip install 'nin-edge[openvino]'`` brings ``onnxruntime-ep-openvino``: a library that onnxruntime
loads with ``register_execution_provider_library`` (once per process) and that offers one
``OrtEpDevice`` per OpenVINO device (CPU, GPU, NPU); a session takes it with
``SessionOptions.add_provider_for_devices``. It does not replace onnxruntime, unlike the older
``onnxruntime-openvino`` wheel.

Which CPU provider ``auto`` takes follows measurements (docs/runtime.md, "OpenVINO"): OpenVINO on CPUs
with AMX or AVX-512 VNNI, where it ran NiN 1.7-6x faster than the CPU provider; the CPU provider
elsewhere, where OpenVINO was slower (1.2-1.35x on an AMD EPYC with AVX2), or offered no device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.choices import Choice
from .core.errors import ConfigError, ProviderError
from .core.numbers import is_whole_number

OPENVINO = "OpenVINOExecutionProvider"
INSTALL = "pip install 'nin-edge[openvino]' (x86-64 Linux or Windows)"
#: CPU features with which OpenVINO beat the CPU provider in our measurements.
FAST_CPU_FLAGS = ("amx_tile", "avx512_vnni")

_lock = threading.Lock()
_registered = False


class OpenVinoDevice(Choice):
    """The OpenVINO device a session runs on."""

    CPU = "CPU"
    GPU = "GPU"
    NPU = "NPU"


class OpenVinoPrecision(Choice):
    """OpenVINO's inference precision hint; ``ACCURACY`` keeps the model's own precision."""

    DEFAULT = "default"
    FP32 = "FP32"
    FP16 = "FP16"
    ACCURACY = "ACCURACY"


@dataclass(frozen=True)
class OpenVinoOptions:
    """What a user of OpenVINO sets: device, precision hint, streams, threads, compiled-model cache."""

    device_type: str = "CPU"
    precision: str = "default"
    num_streams: int | None = None
    num_threads: int | None = None
    cache_dir: str | None = None

    def validate(self) -> None:
        OpenVinoDevice.check(self.device_type, "openvino device_type")
        OpenVinoPrecision.check(self.precision, "openvino precision")
        for name, value in (("num_streams", self.num_streams), ("num_threads", self.num_threads)):
            if value is not None and not is_whole_number(value, minimum=1):
                raise ConfigError(f"openvino {name} must be a positive whole number, got {value!r}")

    def provider_options(self) -> dict[str, str]:
        """The EP's own option names and string values."""
        options = {}
        if self.precision != "default":
            options["precision"] = self.precision
        if self.num_streams is not None:
            options["num_streams"] = str(self.num_streams)
        if self.num_threads is not None:
            options["num_of_threads"] = str(self.num_threads)
        if self.cache_dir:
            options["cache_dir"] = str(Path(self.cache_dir))
        return options


def register(ort: Any, importer: Callable[[], Any] | None = None) -> None:
    """Load the plugin library into onnxruntime, once per process, from any thread."""
    global _registered
    with _lock:
        if _registered:
            return
        try:
            plugin = importer() if importer else _import_plugin()
        except ImportError:
            raise ProviderError(f"the OpenVINO execution provider is not installed: {INSTALL}") from None
        try:
            ort.register_execution_provider_library(OPENVINO, plugin.get_library_path())
        except Exception as exc:  # onnxruntime's own error types
            raise ProviderError(
                f"onnxruntime {ort.__version__} could not load the OpenVINO plugin: {str(exc).splitlines()[0]}"
            ) from None
        _registered = True


def _import_plugin() -> Any:
    import onnxruntime_ep_openvino

    return onnxruntime_ep_openvino


def devices(ort: Any, device_type: str) -> list[Any]:
    """The plugin's ``OrtEpDevice`` entries for ``device_type``; an error says what there is instead."""
    offered = [d for d in ort.get_ep_devices() if d.ep_name == OPENVINO]
    chosen = [d for d in offered if d.ep_metadata.get("ov_device", "").split(".")[0] == device_type]
    if not chosen:
        found = ", ".join(sorted({d.ep_metadata.get("ov_device", "?") for d in offered})) or "none"
        raise ProviderError(
            f"the OpenVINO execution provider offers no {device_type} device on this machine (it offers: {found}); "
            "OpenVINO's plugin lists Intel CPUs, GPUs and NPUs"
        )
    return chosen[:1]


def usable(ort: Any, device_type: str = "CPU") -> bool:
    """Whether the plugin is installed and offers ``device_type`` here (registering it if so)."""
    try:
        register(ort)
        devices(ort, device_type)
    except ProviderError:
        return False
    return True


def prefers_openvino(flags: Iterable[str]) -> bool:
    """The measured rule: OpenVINO beats the CPU provider on CPUs with AMX or AVX-512 VNNI."""
    have = set(flags)
    return any(flag in have for flag in FAST_CPU_FLAGS)
