"""Coral Edge TPU: offline compatibility check and ``edgetpu_compiler`` driver.

Usage::

    python -m edge.edgetpu check MODEL.tflite [--json report.json]
    python -m edge.edgetpu compile MODEL.tflite [--out-dir DIR] [--json report.json]

``check`` reads the ``.tflite`` flatbuffer (no interpreter, no compiler) and
reports what keeps the model off the Edge TPU, following Coral's published model
requirements (https://coral.ai/docs/edgetpu/models-intro/): tensors that are not
int8/uint8, dynamic shapes, tensors with more than 3 non-unit dimensions, ops
outside the supported-operations table, and the first unsupported op, after
which the compiler leaves the rest of the graph on the CPU. A QUANTIZE of a float
model input and a DEQUANTIZE of a float model output (what a full-integer model
with float I/O has) are noted as CPU boundary ops, not blockers. Exit status: 0
when nothing blocks, 1 when something does, 2 on bad input.

``compile`` runs ``edgetpu_compiler -s`` when installed (x86-64 Linux), after
pinning a dynamic batch dimension to its static size (a dynamic batch makes the
compiler fail with "Attempting to use a delegate that only supports
static-sized tensors"), and parses its log: ops on the Edge TPU and on the CPU,
per-operator status, on-chip and off-chip parameter memory.

Limitations of ``check``: per-op restrictions that depend on op options or
values (fused activations on pooling/concatenation, reduction axes of MEAN,
the 16,000-element SOFTMAX limit, resize sizes) are not evaluated; the compiler
has the final word.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from edge._common import EdgeError, check_writable, setup_logging, write_json_atomic

logger = logging.getLogger("edge.edgetpu")

COMPILER = "edgetpu_compiler"
CUSTOM_OP = "edgetpu-custom-op"
INSTALL_COMPILER = (
    "edgetpu_compiler is not installed. It runs on x86-64 Debian/Ubuntu: add the Coral apt repository "
    "and `apt-get install edgetpu-compiler` (https://coral.ai/docs/edgetpu/compiler/), or use Coral's "
    "web compiler notebook; pass --compiler PATH if it is installed elsewhere"
)

# Coral's supported-operations table, as TFLite builtin names, with its known limitations.
SUPPORTED_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": "no fused activation; a constant input must be all zeros with exactly 2 inputs",
    "CONV_2D": "",
    "DEPTHWISE_CONV_2D": "",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "default weights format only",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": "reduction along x and/or y only",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "",
    "PAD": "padding along x and/or y only",
    "PRELU": "",
    "QUANTIZE": "",
    "REDUCE_MAX": "",
    "REDUCE_MIN": "",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "",
    "RESIZE_BILINEAR": "3-D input/output; may stay on the CPU to avoid precision loss",
    "RESIZE_NEAREST_NEIGHBOR": "3-D input/output; may stay on the CPU to avoid precision loss",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "1-D input with at most 16,000 elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "only when squeezed dimensions are leading 1s",
    "STRIDED_SLICE": "",
    "SUB": "",
    "SUM": "",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}
EDGETPU_DTYPES = frozenset({"INT8", "UINT8"})
# Constant tensors of these types are fine (int32 biases, shapes, axes).
CONSTANT_OK_DTYPES = EDGETPU_DTYPES | {"INT32"}
MAX_NON_UNIT_DIMS = 3


@dataclasses.dataclass(frozen=True)
class Finding:
    """One reason (or warning) about Edge TPU compatibility."""

    kind: str  # "dtype", "dynamic_shape", "rank", "unsupported_op", "boundary", "dynamic_batch", "compiled"
    message: str
    op_index: int | None = None
    op: str | None = None
    tensor: str | None = None


@dataclasses.dataclass
class CheckReport:
    """Result of :func:`check_model`."""

    model: str
    compiled: bool
    total_ops: int
    blockers: list[Finding]
    warnings: list[Finding]
    notes: list[Finding]
    first_unsupported: dict[str, Any] | None
    expected_tpu_ops: int
    expected_cpu_ops: int

    @property
    def ok(self) -> bool:
        """True when nothing blocks the model from the Edge TPU."""
        return not self.blockers

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        return d


def _op_label(op: Any) -> str:
    return op.custom_code if op.name == "CUSTOM" and op.custom_code else op.name


def _tensor_findings(summary: Any, op: Any) -> list[Finding]:
    """Dtype, dynamic-shape and rank problems of the tensors one op touches."""
    out = []
    label = _op_label(op)
    for t in summary.op_tensors(op):
        where = dict(op_index=op.index, op=label, tensor=t.name)
        if t.is_constant:
            if t.dtype not in CONSTANT_OK_DTYPES:
                out.append(Finding("dtype", f"constant tensor {t.name!r} is {t.dtype} (needs int8/uint8)", **where))
            continue
        if t.dtype not in EDGETPU_DTYPES:
            out.append(Finding("dtype", f"tensor {t.name!r} is {t.dtype} (needs int8/uint8)", **where))
        if any(d < 0 for d in t.shape_signature[1:]):
            out.append(Finding("dynamic_shape", f"tensor {t.name!r} has dynamic shape {list(t.shape_signature)}",
                               **where))
        non_unit = sum(1 for d in t.shape if d != 1)
        if non_unit > MAX_NON_UNIT_DIMS:
            out.append(Finding("rank", f"tensor {t.name!r} has shape {list(t.shape)}: more than "
                                       f"{MAX_NON_UNIT_DIMS} dimensions larger than 1", **where))
    return out


def _is_io_conversion(summary: Any, op: Any) -> bool:
    """A QUANTIZE of a float model input or a DEQUANTIZE producing a float model output.

    Unlike :meth:`ModelSummary.is_boundary_conversion`, a DEQUANTIZE of a
    constant (FLOAT16 weights) does not count: the Edge TPU cannot run it.
    """
    inputs = set(summary.subgraph_inputs[op.subgraph])
    outputs = set(summary.subgraph_outputs[op.subgraph])
    ins = [i for i in op.inputs if i >= 0]
    if op.name == "QUANTIZE":
        return bool(ins) and all(i in inputs and summary.tensor(i, op.subgraph).is_float for i in ins)
    if op.name == "DEQUANTIZE":
        return bool(op.outputs) and all(o in outputs for o in op.outputs) and not any(
            summary.tensor(i, op.subgraph).is_constant for i in ins)
    return False


def check_summary(summary: Any, model: str = "") -> CheckReport:
    """Checks a :class:`edge.tflite_model.ModelSummary` against the Edge TPU requirements.

    Only the main subgraph (0) is considered; more subgraphs (control flow) are a
    blocker by themselves.
    """
    ops = [op for op in summary.ops if op.subgraph == 0]
    blockers: list[Finding] = []
    warnings: list[Finding] = []
    notes: list[Finding] = []
    counts = summary.op_counts(0)
    compiled = CUSTOM_OP in counts
    if compiled:
        notes.append(Finding("compiled", f"already compiled: {counts[CUSTOM_OP]} {CUSTOM_OP} op(s) run on the "
                                         f"Edge TPU, {len(ops) - counts[CUSTOM_OP]} other op(s) on the CPU"))
    if summary.num_subgraphs > 1:
        blockers.append(Finding("unsupported_op", f"{summary.num_subgraphs} subgraphs (control flow); the Edge "
                                                  "TPU compiler supports one"))
    batch_dynamic = [t for t in summary.input_tensors(0) if t.shape_signature and t.shape_signature[0] < 0
                     and all(d >= 0 for d in t.shape_signature[1:])]
    if batch_dynamic:
        warnings.append(Finding(
            "dynamic_batch",
            "the batch dimension is dynamic (shape signature "
            f"{list(batch_dynamic[0].shape_signature)}); edgetpu_compiler can refuse it as a dynamic-sized "
            "tensor. `python -m edge.edgetpu compile` pins it to "
            f"{batch_dynamic[0].shape[0]} before compiling", tensor=batch_dynamic[0].name))
    first: dict[str, Any] | None = None
    for pos, op in enumerate(ops):
        label = _op_label(op)
        if label == CUSTOM_OP:
            continue
        if _is_io_conversion(summary, op):
            notes.append(Finding("boundary", f"{op.name} of the float model "
                                             f"{'input' if op.name == 'QUANTIZE' else 'output'} runs on the CPU",
                                 op_index=op.index, op=label))
            continue
        reasons = []
        if op.name == "CUSTOM" or op.name not in SUPPORTED_OPS:
            reasons.append(Finding("unsupported_op", f"{label} is not in the Edge TPU's supported operations",
                                   op_index=op.index, op=label))
        reasons.extend(_tensor_findings(summary, op))
        if compiled:
            continue  # ops left outside the custom op are expected to run on the CPU
        blockers.extend(reasons)
        if reasons and first is None:
            first = {"op_index": op.index, "op": label, "reasons": [r.message for r in reasons],
                     "ops_on_cpu_from_here": len(ops) - pos}
    if compiled:
        tpu = counts.get(CUSTOM_OP, 0)
        cpu = len(ops) - tpu
    else:
        on_cpu = {n.op_index for n in notes if n.kind == "boundary"}
        if first is not None:
            start = next(pos for pos, op in enumerate(ops) if op.index == first["op_index"])
            on_cpu.update(op.index for op in ops[start:])
        cpu = len(on_cpu)
        tpu = len(ops) - cpu
    return CheckReport(model=model, compiled=compiled, total_ops=len(ops), blockers=blockers,
                       warnings=warnings, notes=notes, first_unsupported=first,
                       expected_tpu_ops=tpu, expected_cpu_ops=cpu)


def check_model(path: str | os.PathLike) -> CheckReport:
    """Reads a ``.tflite`` file and checks it (see :func:`check_summary`).

    Raises:
        edge.tflite_model.InvalidModelError: For a missing or malformed file.
    """
    from edge.tflite_model import summarize

    return check_summary(summarize(path), model=os.fspath(path))


def format_check(report: CheckReport) -> str:
    """Human-readable check report."""
    lines = [f"{report.model}: {report.total_ops} ops"]
    if report.ok:
        lines.append(f"Edge TPU: no blockers; expected {report.expected_tpu_ops} op(s) on the Edge TPU, "
                     f"{report.expected_cpu_ops} on the CPU")
    else:
        ops_blocked = len({f.op_index for f in report.blockers})
        lines.append(f"Edge TPU: {len(report.blockers)} blocker(s) in {ops_blocked} op(s)")
        grouped: dict[tuple[Any, str], list[Finding]] = {}
        for f in report.blockers:
            grouped.setdefault((f.op_index, f.op or ""), []).append(f)
        for (index, op), findings in grouped.items():
            where = f"op {index} {op}" if index is not None else "model"
            by_kind: dict[str, list[str]] = {}
            for f in findings:
                by_kind.setdefault(f.kind, []).append(f.message)
            for kind, messages in by_kind.items():
                shown = "; ".join(messages[:2]) + (f"; ... ({len(messages) - 2} more)" if len(messages) > 2 else "")
                lines.append(f"  - {where} [{kind}]: {shown}")
        if report.first_unsupported:
            fu = report.first_unsupported
            lines.append(f"First unsupported op: #{fu['op_index']} {fu['op']}; it and everything after it "
                         f"({fu['ops_on_cpu_from_here']} op(s)) fall back to the CPU")
    for f in report.warnings:
        lines.append(f"  warning [{f.kind}]: {f.message}")
    for f in report.notes:
        where = f"op {f.op_index} " if f.op_index is not None else ""
        lines.append(f"  note: {where}{f.message}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- static batch


def pin_batch(data: bytes) -> tuple[bytes, bool]:
    """Replaces a dynamic batch dimension (-1 in axis 0 of shape signatures) by the static size.

    Only tensors whose signature is dynamic in the batch axis alone are changed;
    a model with other dynamic dimensions is returned unchanged.

    Returns:
        ``(model bytes, changed)``.
    """
    from edge.tflite_model import read_model, write_model

    model = read_model(data)
    changed = False
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            sig = list(t.shapeSignature) if t.shapeSignature is not None else None
            if not sig or sig[0] >= 0:
                continue
            if any(d < 0 for d in sig[1:]):
                return data, False
            shape = list(t.shape) if t.shape is not None else []
            sig[0] = int(shape[0]) if shape else 1
            t.shapeSignature = sig
            changed = True
    return (write_model(model), True) if changed else (data, False)


# --------------------------------------------------------------------------- compiler


_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _bytes(text: str) -> int | None:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(B|KiB|MiB|GiB)\s*", text)
    return int(round(float(m.group(1)) * _SIZE_UNITS[m.group(2)])) if m else None


def parse_compiler_log(text: str) -> dict[str, Any]:
    """Parses the stdout of ``edgetpu_compiler -s``.

    The format (as shown in Coral's compiler documentation and in compiler
    output quoted in google-coral/edgetpu issues #60, #356 and #490) is a header
    ``Edge TPU Compiler version X``, ``Model compiled successfully in N ms.``,
    ``Key: value`` lines (input/output model and size, on-chip memory used and
    remaining, off-chip memory, number of Edge TPU subgraphs, total number of
    operations), optionally ``Number of operations that will run on Edge TPU: N``
    / ``... on CPU: N`` when some ops stay on the CPU, and with ``-s`` an
    ``Operator  Count  Status`` table. Failures print ``ERROR:`` lines and
    ``Compilation failed``.

    Returns:
        A dict with ``success``, ``version``, ``compile_ms``, ``input_model``,
        ``output_model``, ``on_chip_memory_used_bytes``,
        ``on_chip_memory_remaining_bytes``, ``off_chip_memory_used_bytes``,
        ``edgetpu_subgraphs``, ``total_ops``, ``tpu_ops``, ``cpu_ops``,
        ``operators`` (list of ``{op, count, status, on_tpu}``) and ``errors``.
    """
    out: dict[str, Any] = {"success": False, "version": None, "compile_ms": None, "input_model": None,
                           "output_model": None, "on_chip_memory_used_bytes": None,
                           "on_chip_memory_remaining_bytes": None, "off_chip_memory_used_bytes": None,
                           "edgetpu_subgraphs": None, "total_ops": None, "tpu_ops": None, "cpu_ops": None,
                           "operators": [], "errors": []}
    keys = {
        "Input model": ("input_model", str),
        "Output model": ("output_model", str),
        "On-chip memory used for caching model parameters": ("on_chip_memory_used_bytes", _bytes),
        "On-chip memory remaining for caching model parameters": ("on_chip_memory_remaining_bytes", _bytes),
        "Off-chip memory used for streaming uncached model parameters": ("off_chip_memory_used_bytes", _bytes),
        "Number of Edge TPU subgraphs": ("edgetpu_subgraphs", int),
        "Total number of operations": ("total_ops", int),
        "Number of operations that will run on Edge TPU": ("tpu_ops", int),
        "Number of operations that will run on CPU": ("cpu_ops", int),
    }
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = re.match(r"Edge TPU Compiler version (\S+)", line)
        if m:
            out["version"] = m.group(1)
            continue
        m = re.match(r"Model compiled successfully in (\d+) ms", line)
        if m:
            out["success"] = True
            out["compile_ms"] = int(m.group(1))
            continue
        if line.startswith("ERROR") or "Compilation failed" in line or "Internal compiler error" in line:
            out["errors"].append(line)
            continue
        if re.match(r"Operator\s+Count\s+Status", line):
            in_table = True
            continue
        if in_table:
            m = re.match(r"(\S+)\s+(\d+)\s+(.+)$", line)
            if m:
                status = m.group(3).strip()
                out["operators"].append({"op": m.group(1), "count": int(m.group(2)), "status": status,
                                         "on_tpu": status == "Mapped to Edge TPU"})
                continue
            in_table = False
        key, sep, value = line.partition(":")
        if sep and key.strip() in keys:
            name, conv = keys[key.strip()]
            try:
                out[name] = conv(value.strip())
            except ValueError:
                logger.debug("unparsed compiler line: %s", line)
    if out["errors"] and not out["success"]:
        out["success"] = False
    if out["operators"]:
        mapped = sum(o["count"] for o in out["operators"] if o["on_tpu"])
        total = sum(o["count"] for o in out["operators"])
        out["tpu_ops"] = mapped if out["tpu_ops"] is None else out["tpu_ops"]
        out["cpu_ops"] = total - mapped if out["cpu_ops"] is None else out["cpu_ops"]
    elif out["success"] and out["tpu_ops"] is None and out["total_ops"] is not None:
        out["tpu_ops"], out["cpu_ops"] = out["total_ops"], 0
    return out


def find_compiler(path: str | None = None) -> str:
    """Returns the compiler executable, or raises EdgeError saying what to install."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise EdgeError(f"--compiler {path!r} is not an executable file")
    found = shutil.which(COMPILER)
    if not found:
        raise EdgeError(INSTALL_COMPILER)
    return found


def compile_model(model: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                  compiler: str | None = None, min_runtime_version: str | None = None,
                  pin_dynamic_batch: bool = True, timeout: float = 600.0,
                  overwrite: bool = False) -> dict[str, Any]:
    """Compiles a model for the Edge TPU with ``edgetpu_compiler`` and parses its log.

    Args:
        model: Full-integer ``.tflite`` model.
        out_dir: Where ``<stem>_edgetpu.tflite`` and its ``.log`` go (default:
            the model's folder).
        compiler: Compiler executable (default: ``edgetpu_compiler`` on PATH).
        min_runtime_version: Passed as ``-m``.
        pin_dynamic_batch: Compile a copy whose dynamic batch is pinned (see :func:`pin_batch`).
        timeout: Seconds before the compiler is stopped.
        overwrite: Replace an existing compiled model.

    Returns:
        The parsed log (:func:`parse_compiler_log`) plus ``compiled_model``,
        ``command``, ``returncode``, ``pinned_batch`` and ``log``.

    Raises:
        EdgeError: If the compiler is missing, fails, or the output exists.
    """
    from edge.tflite_model import load_bytes, validate

    src = os.fspath(model)
    validate(src)
    exe = find_compiler(compiler)
    out_dir = os.fspath(out_dir) if out_dir else os.path.dirname(os.path.abspath(src))
    stem = os.path.splitext(os.path.basename(src))[0]
    target = os.path.join(out_dir, f"{stem}_edgetpu.tflite")
    check_writable(target, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgetpu-") as tmp:
        data, pinned = pin_batch(load_bytes(src)) if pin_dynamic_batch else (b"", False)
        compile_src = src
        if pinned:
            compile_src = os.path.join(tmp, os.path.basename(src))
            with open(compile_src, "wb") as f:
                f.write(data)
            logger.info("pinned the dynamic batch dimension of %s before compiling", src)
        work_out = os.path.join(tmp, "out")
        os.makedirs(work_out)
        cmd = [exe, "-s", "-o", work_out]
        if min_runtime_version:
            cmd += ["-m", str(min_runtime_version)]
        cmd.append(compile_src)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise EdgeError(f"edgetpu_compiler did not finish within {timeout:g} s") from e
        except OSError as e:
            raise EdgeError(f"cannot run {exe}: {e}") from e
        log = proc.stdout + (("\n" + proc.stderr) if proc.stderr else "")
        parsed = parse_compiler_log(log)
        produced = os.path.join(work_out, f"{stem}_edgetpu.tflite")
        if proc.returncode != 0 or not parsed["success"] or not os.path.isfile(produced):
            detail = "; ".join(parsed["errors"]) or log.strip().splitlines()[-1:] or ["no output"]
            raise EdgeError(f"edgetpu_compiler failed (exit {proc.returncode}): "
                            f"{detail if isinstance(detail, str) else detail[0]}")
        validate(produced)
        for name in os.listdir(work_out):
            dest = os.path.join(out_dir, name)
            if name.endswith(".log") or name == os.path.basename(produced):
                shutil.move(os.path.join(work_out, name), dest)
    parsed.update(compiled_model=target, command=cmd, returncode=proc.returncode, pinned_batch=pinned, log=log)
    return parsed


def format_compile(result: dict[str, Any]) -> str:
    """Human-readable summary of a compilation."""
    def mib(v: int | None) -> str:
        return "-" if v is None else f"{v / 1024**2:.2f} MiB"

    lines = [
        f"compiled: {result['compiled_model']} (edgetpu_compiler {result.get('version') or '?'})",
        f"ops on the Edge TPU: {result.get('tpu_ops')}, on the CPU: {result.get('cpu_ops')} "
        f"(total {result.get('total_ops')})",
        f"on-chip memory used: {mib(result.get('on_chip_memory_used_bytes'))}, "
        f"off-chip: {mib(result.get('off_chip_memory_used_bytes'))}",
    ]
    for o in result.get("operators", []):
        if not o["on_tpu"]:
            lines.append(f"  on CPU: {o['op']} x{o['count']}: {o['status']}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses ``python -m edge.edgetpu check|compile``."""
    p = argparse.ArgumentParser(prog="python -m edge.edgetpu",
                                description="Edge TPU compatibility check and compilation.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="report what keeps a .tflite off the Edge TPU (offline)")
    c.add_argument("models", nargs="+", metavar="MODEL.tflite")
    k = sub.add_parser("compile", help="run edgetpu_compiler and parse its log")
    k.add_argument("models", nargs="+", metavar="MODEL.tflite")
    k.add_argument("--out-dir", default=None, help="output folder (default: next to each model)")
    k.add_argument("--compiler", default=None, help=f"compiler executable (default: {COMPILER} on PATH)")
    k.add_argument("--min-runtime-version", default=None, help="edgetpu_compiler -m")
    k.add_argument("--keep-dynamic-batch", action="store_true",
                   help="compile the model as is, without pinning a dynamic batch dimension")
    k.add_argument("--timeout", type=float, default=600.0, help="seconds before the compiler is stopped")
    for sp in (c, k):
        g = sp.add_argument_group("output")
        g.add_argument("--json", default=None, metavar="OUT.json", help="write the report as JSON")
        g.add_argument("--overwrite", action="store_true", help="replace existing output files")
        g.add_argument("-v", "--verbose", action="count", default=0)
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Runs ``check`` (exit 1 when blockers are found) or ``compile`` (exit 1 on failure)."""
    from edge.tflite_model import InvalidModelError

    setup_logging(args.verbose)
    try:
        check_writable(args.json, args.overwrite)
        reports: list[dict[str, Any]] = []
        failed = 0
        for model in args.models:
            if args.command == "check":
                report = check_model(model)
                print(format_check(report), end="")
                reports.append(report.to_dict())
                failed += 0 if report.ok else 1
                continue
            report_check = check_model(model)
            if not report_check.ok:
                print(format_check(report_check), end="", file=sys.stderr)
            try:
                result = compile_model(model, args.out_dir, compiler=args.compiler,
                                       min_runtime_version=args.min_runtime_version,
                                       pin_dynamic_batch=not args.keep_dynamic_batch,
                                       timeout=args.timeout, overwrite=args.overwrite)
            except EdgeError as e:
                if "not installed" in str(e) or "is not an executable" in str(e):
                    raise
                print(f"error: {model}: {e}", file=sys.stderr)
                reports.append({"model": model, "success": False, "error": str(e)})
                failed += 1
                continue
            print(format_compile(result), end="")
            reports.append({"model": model, **{k: v for k, v in result.items() if k != "log"}})
    except (EdgeError, InvalidModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        write_json_atomic(args.json, {"tool": f"edge.edgetpu {args.command}", "results": reports},
                          overwrite=args.overwrite)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
