"""The one LiteRT interpreter factory, and a float-in/float-out classifier wrapper.

Every interpreter in tfq (evaluation, the edge runner) is made by
:func:`make_interpreter`, which

* picks the interpreter module: ``ai_edge_litert.interpreter`` (LiteRT), then
  ``tflite_runtime.interpreter`` (shipped on Coral boards and older Raspberry
  Pi images), then ``tensorflow.lite`` as a deprecated last resort, imported
  lazily so this module never pulls in TensorFlow when LiteRT is present;
* validates the flatbuffer first (:func:`edge.tflite_model.validate`), so a
  missing, empty, truncated or corrupted file raises :class:`InvalidModelError`
  instead of crashing the process inside C++;
* makes threads, XNNPACK (through the op-resolver type) and delegates explicit.

:class:`TFLiteModel` runs a one-input classifier on already preprocessed float
images: it quantizes them with the input tensor's scale and zero point, runs in
batches and returns dequantized float32 outputs, for float32, int8, uint8 and
int16 input/output tensors alike.

Example::

    model = TFLiteModel.from_path("resnet18_int8.tflite", num_threads=2)
    logits = model.predict(images)          # float32 in, float32 out
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Union

import numpy as np

from edge.tflite_model import InvalidModelError, load_bytes, validate

__all__ = [
    "BACKENDS",
    "DelegateError",
    "InterpreterError",
    "InvalidModelError",
    "TFLiteModel",
    "delegate_coverage",
    "dequantize_output",
    "interpreter_backend",
    "load_delegate",
    "make_interpreter",
    "quantize_input",
]

logger = logging.getLogger(__name__)

ModelInput = Union[str, os.PathLike, bytes, bytearray]

# Interpreter modules in the order "auto" tries them: name -> module path.
BACKENDS: dict[str, str] = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}
# Environment variable that overrides backend="auto" (e.g. to force tflite_runtime).
BACKEND_ENV = "TFQ_LITERT_BACKEND"

_QUANTIZED_INPUT_DTYPES = (np.int8, np.uint8, np.int16)


class InterpreterError(RuntimeError):
    """Raised when a valid flatbuffer cannot be turned into a running interpreter."""


class DelegateError(RuntimeError):
    """Raised when a delegate library cannot be loaded or rejects the model."""


@dataclasses.dataclass(frozen=True)
class _Backend:
    name: str
    version: str
    module: str
    interpreter_cls: Any
    load_delegate: Any
    op_resolver_type: Any  # the OpResolverType enum, or None when the backend lacks it


def _import_backend(name: str) -> _Backend:
    """Imports one backend by name; raises ImportError when it is not installed."""
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        pkg = importlib.import_module("ai_edge_litert")
        return _Backend(name, getattr(pkg, "__version__", "unknown"), mod.__name__,
                        mod.Interpreter, mod.load_delegate, getattr(mod, "OpResolverType", None))
    if name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        pkg = importlib.import_module("tflite_runtime")
        return _Backend(name, getattr(pkg, "__version__", "unknown"), mod.__name__,
                        mod.Interpreter, mod.load_delegate, getattr(mod, "OpResolverType", None))
    if name == "tensorflow":
        # Last resort only: importing TensorFlow costs seconds and gigabytes.
        tf = importlib.import_module("tensorflow")
        return _Backend(name, tf.__version__, "tensorflow.lite", tf.lite.Interpreter,
                        tf.lite.experimental.load_delegate,
                        getattr(tf.lite.experimental, "OpResolverType", None))
    raise ValueError(f"unknown interpreter backend {name!r}; choose one of {['auto', *BACKENDS]}")


_RESOLVED: dict[str, _Backend] = {}


def _resolve(backend: str = "auto") -> _Backend:
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto") or "auto"
    if backend in _RESOLVED:
        return _RESOLVED[backend]
    if backend != "auto":
        try:
            found = _import_backend(backend)
        except ImportError as e:
            raise InterpreterError(
                f"interpreter backend {backend!r} is not installed ({e}); "
                "install ai-edge-litert (pip install ai-edge-litert)"
            ) from e
    else:
        errors = []
        for name in BACKENDS:
            try:
                found = _import_backend(name)
                break
            except ImportError as e:
                errors.append(f"{name}: {e}")
        else:
            raise InterpreterError(
                "no TFLite interpreter found; install ai-edge-litert (pip install ai-edge-litert) "
                "or tflite-runtime. Tried: " + "; ".join(errors)
            )
        if found.name == "tensorflow":
            logger.warning("ai_edge_litert and tflite_runtime are missing; falling back to the "
                           "deprecated tf.lite.Interpreter")
    _RESOLVED[backend] = found
    return found


def interpreter_backend(backend: str = "auto") -> dict[str, str]:
    """Describes the interpreter module :func:`make_interpreter` would use.

    Args:
        backend: ``"auto"`` (the first installed of :data:`BACKENDS`, or the one
            named by the ``TFQ_LITERT_BACKEND`` environment variable) or a
            backend name.

    Returns:
        ``{"name": "ai_edge_litert", "version": "2.3.0", "module": "ai_edge_litert.interpreter"}``.

    Raises:
        InterpreterError: If no interpreter is installed.
    """
    b = _resolve(backend)
    return {"name": b.name, "version": b.version, "module": b.module}


def load_delegate(library: str | os.PathLike, options: dict[str, Any] | None = None,
                  backend: str = "auto") -> Any:
    """Loads an external delegate (GPU, Edge TPU, ...) from a shared library.

    Args:
        library: Path or soname of the delegate library, e.g.
            ``libedgetpu.so.1`` or ``/data/local/tmp/libtensorflowlite_gpu_delegate.so``.
        options: Delegate options (``{"device": "usb"}`` for the Edge TPU).
        backend: Interpreter backend, as in :func:`make_interpreter`.

    Returns:
        The loaded delegate object, to pass in ``delegates=``.

    Raises:
        DelegateError: If the library is missing or refuses to create a delegate.
    """
    import ctypes

    b = _resolve(backend)
    try:
        # Probe first: LiteRT's Delegate raises from a half-built object when the library is missing.
        ctypes.CDLL(os.fspath(library))
    except OSError as e:
        raise DelegateError(f"cannot load delegate library {os.fspath(library)!r}: {e}") from e
    try:
        return b.load_delegate(os.fspath(library), options or {})
    except (OSError, ValueError, RuntimeError, AttributeError) as e:
        raise DelegateError(f"cannot load delegate library {os.fspath(library)!r}: {e}") from e


def make_interpreter(
    model: ModelInput,
    *,
    num_threads: int | None = None,
    use_xnnpack: bool = True,
    delegates: Sequence[Any] = (),
    preserve_all_tensors: bool = False,
    backend: str = "auto",
    allocate: bool = True,
    validate_first: bool = True,
) -> Any:
    """Makes a TFLite interpreter for a validated model.

    Args:
        model: Path to a ``.tflite`` file, or its bytes. A path is validated
            through a memory map and then loaded by path (mmap), so large weights
            are not copied into Python memory.
        num_threads: CPU threads for the kernels and XNNPACK; None lets the
            runtime choose.
        use_xnnpack: False selects the ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` op
            resolver, so the XNNPACK CPU delegate is not applied.
        delegates: Delegates to apply, in order: loaded delegate objects, library
            paths, or ``(library_path, options_dict)`` pairs.
        preserve_all_tensors: Keep intermediate tensors readable after
            ``invoke()`` (debugging; uses more memory).
        backend: ``"auto"``, ``"ai_edge_litert"``, ``"tflite_runtime"`` or
            ``"tensorflow"``.
        allocate: Call ``allocate_tensors()`` before returning, so an invalid
            graph fails here.
        validate_first: Check the flatbuffer before loading it. Only pass False
            for a model that was just validated (e.g. to time loading alone).

    Returns:
        The interpreter (of the chosen backend's ``Interpreter`` class).

    Raises:
        ValueError: If ``num_threads`` is not a positive int.
        InvalidModelError: If the model is missing, empty, truncated or corrupted.
        DelegateError: If a delegate cannot be loaded or applied.
        InterpreterError: If the runtime refuses the model (unsupported op,
            failed allocation) or no interpreter is installed.
    """
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    if isinstance(model, (str, os.PathLike)):
        if validate_first:
            validate(model)
        source: dict[str, Any] = {"model_path": os.fspath(model)}
    else:
        content = load_bytes(model)
        if validate_first:
            validate(content)
        source = {"model_content": content}
    b = _resolve(backend)
    loaded = []
    for d in delegates:
        if isinstance(d, (str, os.PathLike)):
            loaded.append(load_delegate(d, backend=b.name))
        elif isinstance(d, tuple) and len(d) == 2 and isinstance(d[0], (str, os.PathLike)):
            loaded.append(load_delegate(d[0], d[1], backend=b.name))
        else:
            loaded.append(d)
    kwargs: dict[str, Any] = dict(source, num_threads=num_threads)
    if loaded:
        kwargs["experimental_delegates"] = loaded
    if b.op_resolver_type is not None:
        rt = b.op_resolver_type
        kwargs["experimental_op_resolver_type"] = (
            rt.AUTO if use_xnnpack else rt.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        if preserve_all_tensors:
            kwargs["experimental_preserve_all_tensors"] = True
    elif not use_xnnpack or preserve_all_tensors:
        raise InterpreterError(
            f"{b.module} {b.version} has no op-resolver selection; cannot disable XNNPACK "
            "or preserve all tensors with it"
        )
    try:
        interpreter = b.interpreter_cls(**kwargs)
    except ValueError as e:
        message = str(e)
        if loaded and ("delegate" in message.lower() or "Failed to apply" in message):
            raise DelegateError(f"delegate rejected the model: {message}") from e
        raise InterpreterError(f"the interpreter refused the model: {message}") from e
    except RuntimeError as e:
        if loaded:
            raise DelegateError(f"delegate rejected the model: {e}") from e
        raise InterpreterError(f"the interpreter refused the model: {e}") from e
    if allocate:
        try:
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise InterpreterError(f"allocate_tensors failed: {e}") from e
    return interpreter


# --------------------------------------------------------------------------- delegate coverage


def delegate_coverage(interpreter: Any) -> dict[str, Any]:
    """Counts the model's ops that a delegate (XNNPACK, GPU, Edge TPU) took over.

    After delegation the interpreter keeps the original nodes and appends one
    node per delegated partition, whose inputs and outputs are the partition's
    boundary tensors. The ops of a partition are found by walking back from its
    outputs to its inputs through the producers of each tensor.

    Args:
        interpreter: An interpreter (after ``allocate_tensors``).

    Returns:
        ``{"total_ops", "delegated_ops", "partitions", "delegate_nodes",
        "cpu_ops"}`` where ``cpu_ops`` counts the remaining op names.
    """
    details = interpreter._get_ops_details()  # noqa: SLF001 - the only per-node view
    delegate_nodes = [d for d in details if d["op_name"] == "DELEGATE"]
    original = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {}
    for d in original:
        for t in d["outputs"]:
            producer[int(t)] = d["index"]
    by_index = {d["index"]: d for d in original}
    delegated: set[int] = set()
    partitions = []
    for node in delegate_nodes:
        boundary = {int(t) for t in node["inputs"]}
        members: set[int] = set()
        stack = [int(t) for t in node["outputs"]]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary or t < 0:
                continue
            seen.add(t)
            op = producer.get(t)
            if op is None or op in members:
                continue
            members.add(op)
            stack.extend(int(x) for x in by_index[op]["inputs"])
        partitions.append(len(members))
        delegated |= members
    cpu_ops: dict[str, int] = {}
    for d in original:
        if d["index"] not in delegated:
            cpu_ops[d["op_name"]] = cpu_ops.get(d["op_name"], 0) + 1
    return {
        "total_ops": len(original),
        "delegated_ops": len(delegated),
        "partitions": partitions,
        "delegate_nodes": len(delegate_nodes),
        "cpu_ops": cpu_ops,
    }


# --------------------------------------------------------------------------- (de)quantization


def _quant_params(detail: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64)
    axis = int(qp.get("quantized_dimension", 0))
    if scales.size == 0:
        scale, zp = detail.get("quantization", (0.0, 0))
        if scale:
            scales, zps = np.asarray([scale], np.float64), np.asarray([zp], np.int64)
    if zps.size == 0 and scales.size:
        zps = np.zeros_like(scales, dtype=np.int64)
    return scales, zps, axis


def _broadcast(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if values.size <= 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Converts float input to an input tensor's dtype with its quantization.

    For int8/uint8/int16 tensors with a scale: ``q = round(x / scale) + zero_point``
    (rounding half away from zero, as TFLite's QUANTIZE kernel does), clipped to
    the dtype's range. Per-channel input quantization is broadcast along
    ``quantized_dimension``. Other tensors are cast to their dtype.

    Args:
        x: Float (already preprocessed) values.
        detail: One entry of ``interpreter.get_input_details()``.

    Returns:
        An array of ``detail["dtype"]``.
    """
    dtype = np.dtype(detail["dtype"])
    scales, zps, axis = _quant_params(detail)
    if dtype.type not in _QUANTIZED_INPUT_DTYPES or scales.size == 0 or not np.all(scales > 0):
        if dtype.kind in "iu" and np.issubdtype(np.asarray(x).dtype, np.floating):
            info = np.iinfo(dtype)
            return np.clip(np.rint(x), info.min, info.max).astype(dtype)
        return np.asarray(x).astype(dtype, copy=False)
    x = np.asarray(x, dtype=np.float64)
    scaled = x / _broadcast(scales, x.ndim, axis)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    q = rounded + _broadcast(zps, x.ndim, axis)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Converts an output tensor to float32 with its scale and zero point.

    Args:
        y: Raw output of ``interpreter.get_tensor``.
        detail: One entry of ``interpreter.get_output_details()``.

    Returns:
        ``(y - zero_point) * scale`` as float32 for quantized tensors; ``y`` cast
        to float32 otherwise.
    """
    y = np.asarray(y)
    scales, zps, axis = _quant_params(detail)
    if y.dtype.kind not in "iu" or scales.size == 0 or not np.all(scales > 0):
        return y.astype(np.float32)
    out = (y.astype(np.float64) - _broadcast(zps, y.ndim, axis)) * _broadcast(scales, y.ndim, axis)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- classifier wrapper


class TFLiteModel:
    """A one-input TFLite classifier fed with float input, giving float output.

    Args:
        interpreter: An allocated interpreter from :func:`make_interpreter`.
        output_index: Which output :meth:`predict` returns (position in
            ``get_output_details()``).

    Raises:
        ValueError: If the model does not have exactly one input.
    """

    def __init__(self, interpreter: Any, output_index: int = 0):
        self.interpreter = interpreter
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(
                f"TFLiteModel handles one-input classifiers; this model has {len(inputs)} inputs: "
                f"{[d['name'] for d in inputs]}"
            )
        self._input_index = inputs[0]["index"]
        self._output_pos = output_index
        sig = inputs[0].get("shape_signature")
        self.input_signature: tuple[int, ...] = tuple(
            int(d) for d in (sig if sig is not None and len(sig) else inputs[0]["shape"])
        )

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs: Any) -> TFLiteModel:
        """Loads a model file; keyword arguments go to :func:`make_interpreter`."""
        output_index = kwargs.pop("output_index", 0)
        return cls(make_interpreter(path, **kwargs), output_index=output_index)

    @classmethod
    def from_bytes(cls, data: bytes, **kwargs: Any) -> TFLiteModel:
        """Loads model content; keyword arguments go to :func:`make_interpreter`."""
        output_index = kwargs.pop("output_index", 0)
        return cls(make_interpreter(bytes(data), **kwargs), output_index=output_index)

    @property
    def input_details(self) -> dict[str, Any]:
        """The (single) entry of ``get_input_details()``."""
        return self.interpreter.get_input_details()[0]

    @property
    def output_details(self) -> list[dict[str, Any]]:
        """All entries of ``get_output_details()``."""
        return self.interpreter.get_output_details()

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None when the batch is dynamic."""
        if not self.input_signature or self.input_signature[0] < 0:
            return None
        return self.input_signature[0]

    def check_input(self, x: np.ndarray) -> None:
        """Raises ValueError if ``x`` cannot feed the model's input.

        Args:
            x: A batch, ``(N, *input_shape[1:])``.
        """
        sig = self.input_signature
        if x.ndim != len(sig):
            raise ValueError(
                f"input has shape {tuple(x.shape)} (rank {x.ndim}) but the model expects rank "
                f"{len(sig)} with shape {tuple(sig)} (-1 = any)"
            )
        for axis, (got, want) in enumerate(zip(x.shape[1:], sig[1:]), start=1):
            if want >= 0 and got != want:
                raise ValueError(
                    f"input has shape {tuple(x.shape)} but the model expects {tuple(sig)} "
                    f"(-1 = any): dimension {axis} is {got}, expected {want}"
                )

    def _resize(self, shape: tuple[int, ...]) -> None:
        current = tuple(int(d) for d in self.input_details["shape"])
        if current != shape:
            self.interpreter.resize_tensor_input(self._input_index, list(shape), strict=False)
            self.interpreter.allocate_tensors()

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Runs one batch of float input; returns the dequantized output."""
        self._resize(tuple(batch.shape))
        detail = self.input_details
        self.interpreter.set_tensor(self._input_index, quantize_input(batch, detail))
        self.interpreter.invoke()
        out_detail = self.output_details[self._output_pos]
        return dequantize_output(self.interpreter.get_tensor(out_detail["index"]), out_detail)

    def predict(self, x_float: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Runs the model on float (already preprocessed) input.

        The input tensor is resized to ``batch_size`` when its batch dimension is
        dynamic; a model with a fixed batch (usually 1) runs in chunks of that
        size, padding the last chunk.

        Args:
            x_float: ``(N, *input_shape[1:])`` float array.
            batch_size: Samples per ``invoke()`` for dynamic-batch models.

        Returns:
            float32 array ``(N, *output_shape[1:])``.

        Raises:
            ValueError: If the input shape does not match the model.
        """
        x = np.asarray(x_float)
        self.check_input(x)
        n = x.shape[0]
        step = self.fixed_batch or max(1, int(batch_size))
        outputs = []
        for start in range(0, n, step):
            batch = x[start : start + step]
            real = batch.shape[0]
            if self.fixed_batch and real < step:
                pad = np.repeat(batch[-1:], step - real, axis=0)
                batch = np.concatenate([batch, pad], axis=0)
            outputs.append(self.run_batch(batch)[:real])
        if not outputs:
            out_shape = tuple(int(d) for d in self.output_details[self._output_pos]["shape"][1:])
            return np.zeros((0, *out_shape), np.float32)
        return np.concatenate(outputs, axis=0)
