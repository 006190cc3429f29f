"""Which machine an INT8 model was made for, which class this CPU is, and when the two clash.

onnxruntime's CPU provider runs INT8 convolutions through different kernels per CPU: on x86 CPUs
without VNNI (AVX2) it multiplies u8 x s8 pairs with ``VPMADDUBSW``, whose 16-bit sums saturate
when the weights use all 8 bits; with AVX-512 VNNI / AVX-VNNI / AMX (and on ARM64's dot-product
instructions) the sums are 32-bit and full 8-bit weights are safe and more precise. So an INT8
model is tuned for one class (``int8_target`` in its metadata) and the runtime warns when a model
with full 8-bit weights runs on a CPU where they saturate.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from typing import Any

from .core.choices import Choice
from .core.cpu import cpu_flags


class Int8Target(Choice):
    """The machine class an INT8 model is tuned for; ``auto`` (export only) means this machine's."""

    AUTO = "auto"
    X86_AVX2 = "x86-avx2"
    X86_VNNI = "x86-vnni"
    ARM64 = "arm64"
    TENSORRT = "tensorrt"


#: x86 flags of the int8 dot-product instructions that accumulate in 32 bits (no saturation).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_ARM_MACHINES = ("aarch64", "arm64")


def cpu_class(flags: Iterable[str] | None = None, machine: str | None = None) -> str:
    """This CPU's INT8 class: ``arm64``, ``x86-vnni`` (AVX-512 VNNI, AVX-VNNI or AMX) or ``x86-avx2``.

    ``flags`` and ``machine`` default to this machine's (``/proc/cpuinfo``, ``platform.machine()``).
    An x86 CPU whose flags cannot be read counts as ``x86-avx2``: the class whose INT8 models run
    correctly everywhere.
    """
    machine = (platform.machine() if machine is None else machine).lower()
    if machine in _ARM_MACHINES:
        return Int8Target.ARM64.value
    have = set(cpu_flags() if flags is None else flags)
    return Int8Target.X86_VNNI.value if any(f in have for f in VNNI_FLAGS) else Int8Target.X86_AVX2.value


def saturates(types: str, reduce_range: bool, cpu: str) -> bool:
    """Whether an INT8 model with these types loses accuracy to 16-bit saturation on ``cpu``'s class.

    Only x86 CPUs without VNNI are affected, and only with full 8-bit signed weights (U8S8, S8S8);
    7-bit weights (``reduce_range``) and U8U8 take other paths.
    """
    return cpu == Int8Target.X86_AVX2.value and types in ("u8s8", "s8s8") and not reduce_range


def int8_fit(target: str, recipe: Mapping[str, Any], cpu: str | None = None) -> tuple[str, str | None]:
    """How an INT8 model tuned for ``target`` with ``recipe`` (its metadata's ``int8_recipe``) fits
    the ``cpu`` class (default: this machine's): a line for people, and a warning where the
    difference is known to cost accuracy (else None)."""
    if not target:
        return "not recorded (exported before nin-edge recorded its INT8 target)", None
    cpu = cpu or cpu_class()
    types, reduce_range = str(recipe.get("types", "")), recipe.get("reduce_range")
    line = f"tuned for {target}; this CPU is {cpu}"
    if isinstance(reduce_range, bool) and saturates(types, reduce_range, cpu):
        return line + ": full 8-bit weights SATURATE here", (
            f"this INT8 model was tuned for {target} ({types.upper()} with full 8-bit weights), but this CPU is "
            f"{cpu}: onnxruntime's u8 x s8 kernels without VNNI saturate with such weights and lose accuracy "
            "(NiN on an AVX2 CPU: 98.6% top-1 agreement with FP32, 98.9% with 7-bit weights); export it for this "
            f"CPU with --int8-target {cpu} (or auto here), or ship a bundle with --int8-targets {cpu},{target}"
        )
    if target == cpu:
        return line + " (as tuned)", None
    if target == Int8Target.TENSORRT.value:
        return line + ": laid out for TensorRT; runs here, but was not tuned for this CPU", None
    return line + ": runs correctly here; an export for this class would fit it better", None
