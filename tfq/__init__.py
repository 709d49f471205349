"""tfq: Keras image classifiers from an FP32 baseline to quantized .tflite models.

Importing ``tfq`` is the one place that selects Keras 2 for TensorFlow:
TensorFlow Model Optimization (TFMOT) only works with Keras 2 (``tf_keras``),
and TensorFlow reads ``TF_USE_LEGACY_KERAS`` once, when it is first imported.
Every entry point (``models``, ``pipelines``, the tests) imports ``tfq`` before
TensorFlow. This module itself imports nothing heavy. The TensorFlow-free parts
(``edge.litert``, ``edge.tflite_model``, ``edge.metrics``, ``edge.hostinfo``) live
in the ``edge`` package, which tfq imports and which never imports tfq.
"""

from __future__ import annotations

import os
import sys
import warnings

__version__ = "0.1.0"

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    warnings.warn(
        "TensorFlow was imported before tfq without TF_USE_LEGACY_KERAS=1; "
        "tf.keras is Keras 3 and TFMOT-based stages (QAT) will fail. "
        "Import tfq (or set TF_USE_LEGACY_KERAS=1) before TensorFlow.",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Quieter TensorFlow C++ logs unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
