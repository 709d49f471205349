"""Where the numbers were measured: library versions, CPU model, cores.

Versions come from the installed distributions' metadata, so nothing heavy is
imported (TensorFlow is never loaded to ask for its version).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

from edge.hostinfo import cpu_features, cpu_model, int8_dot_product

__all__ = ["DISTRIBUTIONS", "capture_environment", "cpu_features", "cpu_model", "int8_dot_product"]

#: Distributions whose versions every report shows (label -> distribution name).
DISTRIBUTIONS: dict[str, str] = {
    "TensorFlow": "tensorflow",
    "tf_keras": "tf-keras",
    "LiteRT (ai-edge-litert)": "ai-edge-litert",
    "TFMOT": "tensorflow-model-optimization",
    "ai-edge-quantizer": "ai-edge-quantizer",
    "NumPy": "numpy",
    "tfq": "tfq",
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def capture_environment() -> dict[str, Any]:
    """Versions, CPU and cores of this machine (no user or host names).

    Returns:
      ``{"versions": {label: version or None}, "python", "system", "machine",
      "cpu_model", "cpu_features", "int8_dot_product", "logical_cores", "usable_cores"}``.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    features = cpu_features()
    return {
        "versions": {label: _version(dist) for label, dist in DISTRIBUTIONS.items()},
        "python": sys.version.split()[0],
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_features": features,
        "int8_dot_product": int8_dot_product(features),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
    }
