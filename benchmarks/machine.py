"""The machine a benchmark ran on (CPU, GPU, threads, library versions, matrix-multiply peak), recorded
with its figures."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib.metadata import version
from typing import TYPE_CHECKING

import onnxruntime as ort
import torch
from nin_edge.runtime.core.cpu import cpu_model
from nin_edge.runtime.core.metadata import toolkit_version

from .peers import PEERS

if TYPE_CHECKING:
    from .bench import BenchConfig


def matmul_peak_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best sgemm rate of torch on this machine at ``size``, the yardstick for achieved GFLOP/s."""
    torch.set_num_threads(threads)
    a = torch.rand(size, size)
    b = torch.rand(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def gpu_matmul_peaks(size: int = 8192, repeats: int = 10) -> dict[str, float]:
    """Measured TFLOP/s of torch matmul on the GPU in FP32 (no TF32), TF32 and FP16: the GPU rows' yardstick."""
    peaks = {}
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        for label, dtype, tf32 in (
            ("fp32", torch.float32, False),
            ("tf32", torch.float32, True),
            ("fp16", torch.float16, False),
        ):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.rand(size, size, device="cuda", dtype=dtype)
            b = torch.rand(size, size, device="cuda", dtype=dtype)
            torch.mm(a, b)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, b)
            torch.cuda.synchronize()
            peaks[label] = 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e12
            del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return peaks


def _nvidia_smi(query: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def gpu_details() -> dict:
    """GPU, driver and library versions, and the measured matmul peaks (only when torch sees a GPU)."""
    from nin_edge.runtime.cuda import installed_onnxruntime_distributions, onnxruntime_cuda_major
    from nin_edge.runtime.providers import trt_library_version

    peaks = gpu_matmul_peaks()
    return {
        "name": torch.cuda.get_device_name(0),
        "driver": _nvidia_smi("driver_version") or "unknown",
        "torch cuda / cudnn": f"{torch.version.cuda} / {torch.backends.cudnn.version()}",
        "onnxruntime": f"{', '.join(installed_onnxruntime_distributions())} (CUDA {onnxruntime_cuda_major()})",
        "tensorrt": trt_library_version(),
        "peak tflops": ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
        + " (torch matmul 8192, measured in this run)",
        "peaks": peaks,
    }


def _cpu_model() -> str:
    return cpu_model() or platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return _nvidia_smi("name")


def environment(config: BenchConfig) -> dict:
    """What the figures were measured on."""
    threads = config.threads or os.cpu_count() or 1
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "gpu": _gpu_name(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "nin_edge": toolkit_version(),
        "providers_available": ort.get_available_providers(),
        "matmul_peak_gflops": matmul_peak_gflops(threads),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "int8_calibration": config.calibration_data if "int8" in config.precision else None,
        "gpu_details": gpu_details() if config.torch_device == "cuda" else None,
        "peers": {m: version(m) for name in config.peers for m in PEERS[name].modules},
    }
