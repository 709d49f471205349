"""The CPU a measurement ran on: model name and the SIMD features that pick LiteRT's kernels.

Latency means little without them: XNNPACK's INT8 kernels are several times
faster than FP32 on a CPU with an int8 dot-product instruction (x86 VNNI/AMX,
Arm dotprod/i8mm) and only modestly faster without one. Standard library only,
so the edge runner records the same facts as the reports on a device without
TensorFlow.
"""

from __future__ import annotations

import platform

__all__ = ["SIMD_FEATURES", "cpu_features", "cpu_model", "int8_dot_product"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


#: The CPU flags that decide which LiteRT/XNNPACK kernels run, in the order they are reported.
#: x86: vector width (AVX2 / AVX-512) and int8 dot-product instructions (VNNI, AMX);
#: Arm: NEON (``asimd``), int8 dot product (``asimddp``), int8 matrix multiply (``i8mm``), FP16 (``fphp``).
SIMD_FEATURES: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
    "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "sve", "sve2",
)

#: Flags that give the CPU an int8 dot-product instruction, the main reason INT8 runs several
#: times faster than FP32 on a CPU (without one, XNNPACK's INT8 kernels are only modestly faster).
_DOT_PRODUCT = ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp")


def cpu_features(cpuinfo: str | None = None) -> list[str]:
    """The SIMD features from :data:`SIMD_FEATURES` this CPU reports.

    Args:
      cpuinfo: Text of ``/proc/cpuinfo``; read from the machine when None.

    Returns:
      The present features in :data:`SIMD_FEATURES` order; empty where the
      flags cannot be read (not Linux).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return [f for f in SIMD_FEATURES if f in flags]


def int8_dot_product(features: list[str]) -> str | None:
    """The int8 dot-product instruction set among ``features`` (the fastest first), or None."""
    return next((f for f in _DOT_PRODUCT if f in features), None)
