"""Finding out why onnxruntime's CUDA provider cannot run, and saying how to fix it.

onnxruntime-gpu lists ``CUDAExecutionProvider`` even where its libraries are missing, and then
drops it from a session with only a log line; a CPU ``onnxruntime`` installed beside
``onnxruntime-gpu`` overwrites the shared ``onnxruntime`` package so the CUDA provider vanishes.
These functions name the cause. Standard library only, and nothing runs on a CPU-only path.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GPU_INSTALL = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'nin-edge[gpu]'"


@dataclass(frozen=True)
class CudaLibrary:
    """A shared library the CUDA provider loads, and the wheel that carries it."""

    soname: str
    what: str
    wheel: str
    optional: bool = False


def cuda_libraries(cuda_major: int) -> tuple[CudaLibrary, ...]:
    """The libraries onnxruntime-gpu built for CUDA ``cuda_major`` needs (cuFFT and NVRTC only for some ops)."""
    toolkit = f"nvidia-cuda-runtime, nvidia-cublas (CUDA {cuda_major})"
    cufft = {12: 11, 13: 12}.get(cuda_major, cuda_major - 1)
    return (
        CudaLibrary(f"libcudart.so.{cuda_major}", f"CUDA {cuda_major} runtime", toolkit),
        CudaLibrary(f"libcublasLt.so.{cuda_major}", f"cuBLASLt (CUDA {cuda_major})", toolkit),
        CudaLibrary(f"libcublas.so.{cuda_major}", f"cuBLAS (CUDA {cuda_major})", toolkit),
        CudaLibrary("libcurand.so.10", f"cuRAND (CUDA {cuda_major})", f"nvidia-curand (CUDA {cuda_major})"),
        CudaLibrary("libcudnn.so.9", "cuDNN 9", f"nvidia-cudnn-cu{cuda_major}"),
        CudaLibrary(f"libcufft.so.{cufft}", f"cuFFT (CUDA {cuda_major})", f"nvidia-cufft (CUDA {cuda_major})", True),
        CudaLibrary(
            f"libnvrtc.so.{cuda_major}", f"NVRTC (CUDA {cuda_major})", f"nvidia-cuda-nvrtc (CUDA {cuda_major})", True
        ),
    )


def installed_onnxruntime_distributions() -> list[str]:
    """Which onnxruntime wheels are installed; more than one share (and overwrite) one package."""
    from importlib import metadata  # 30 ms to import: only the GPU paths and their errors need it

    names = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            names.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return names


def onnxruntime_cuda_major() -> int | None:
    """The CUDA major version the imported onnxruntime was built for, or None for a CPU build."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return None
    version = getattr(info, "cuda_version", "") or ""
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


def missing_libraries(
    libraries: tuple[CudaLibrary, ...], load: Callable[[str], object] | None = None
) -> list[CudaLibrary]:
    """The required libraries that the dynamic loader cannot open in this process."""
    if load is None:
        import ctypes

        load = ctypes.CDLL
    missing = []
    for lib in libraries:
        if lib.optional:
            continue
        try:
            load(lib.soname)
        except OSError:
            missing.append(lib)
    return missing


_preload_lock = threading.Lock()
_preloaded = False


def preload_cuda_libraries(ort_module: object) -> None:
    """Let onnxruntime load CUDA and cuDNN from the ``nvidia-*`` wheels, once per process.

    ``onnxruntime.preload_dlls`` (1.21+) finds the libraries that ``nin-edge[gpu]`` installs
    beside it; without it the provider only finds them when torch was imported first or
    ``LD_LIBRARY_PATH`` names them. It prints what it cannot load; that goes into our own
    error message instead (see :func:`diagnose_cuda`), so its output is kept off stdout.
    """
    global _preloaded
    preload = getattr(ort_module, "preload_dlls", None)
    with _preload_lock:
        if _preloaded or preload is None:
            return
        _preloaded = True
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                preload()
            except (OSError, RuntimeError):
                pass  # diagnose_cuda names what is missing if the session then lacks CUDA


def diagnose_cuda(ort_module: object, load: Callable[[str], object] | None = None) -> str:
    """Why the CUDA provider is unavailable or was dropped, and what to run to fix it."""
    dists = installed_onnxruntime_distributions()
    if len(dists) > 1:
        return (
            f"{' and '.join(dists)} are installed together; they share the 'onnxruntime' package and "
            f"overwrite each other. Keep only onnxruntime-gpu: {GPU_INSTALL}"
        )
    major = onnxruntime_cuda_major()
    if major is None:
        return (
            f"this onnxruntime is a CPU build ({', '.join(dists) or 'unknown wheel'}); for NVIDIA GPUs: {GPU_INSTALL}"
        )
    capi = Path(getattr(ort_module, "__file__", "")).parent / "capi"
    if (
        not (capi / "libonnxruntime_providers_cuda.so").is_file()
        and not (capi / "onnxruntime_providers_cuda.dll").is_file()
    ):
        return f"the CUDA provider library is missing from {capi}; reinstall: {GPU_INSTALL}"
    missing = missing_libraries(cuda_libraries(major), load)
    if missing:
        names = ", ".join(f"{lib.soname} ({lib.what})" for lib in missing)
        wheels = sorted({lib.wheel for lib in missing})
        return (
            f"onnxruntime-gpu is built for CUDA {major} and cuDNN 9, but the loader cannot open {names}; "
            f"install them with pip install 'onnxruntime-gpu[cuda,cudnn]' (wheels: {'; '.join(wheels)}) "
            f"or add their folder to LD_LIBRARY_PATH"
        )
    return (
        f"onnxruntime-gpu (CUDA {major}) found its libraries; check the NVIDIA driver (nvidia-smi) "
        "and that the driver supports this CUDA version"
    )
