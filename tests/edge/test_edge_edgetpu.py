"""edge.edgetpu: offline check on every fixture precision, compile through a fake edgetpu_compiler.

There is no edgetpu_compiler or Edge TPU here: `fake_compiler` (tests/edge/conftest.py) prints a
log in the compiler's documented format and copies the model, so the real driver and parser run.
"""

from __future__ import annotations

import json
import os

import pytest
from ai_edge_litert import schema_py_generated as schema

from edge.edgetpu import check_model, main, parse_args, parse_compiler_log, pin_batch
from edge.litert import make_interpreter
from edge.tflite_model import load_bytes, read_model, summarize, write_model


def run(argv, capsys):
    code = main(parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_full_integer_int8_has_no_blockers(model_path, capsys):
    report = check_model(model_path("int8"))
    assert report.ok and report.blockers == []
    assert (report.expected_tpu_ops, report.expected_cpu_ops) == (5, 2)  # QUANTIZE in, DEQUANTIZE out on CPU
    assert [n.op for n in report.notes] == ["QUANTIZE", "DEQUANTIZE"]
    assert [w.kind for w in report.warnings] == ["dynamic_batch"]
    code, out, _ = run(["check", model_path("int8"), model_path("int8_fixed_batch")], capsys)
    assert code == 0 and out.count("no blockers") == 2


def test_fp32_blockers_and_first_unsupported_op(model_path):
    report = check_model(model_path("float32"))
    assert not report.ok
    assert {f.kind for f in report.blockers} == {"dtype"}
    assert report.first_unsupported["op_index"] == 0 and report.first_unsupported["op"] == "CONV_2D"
    assert report.first_unsupported["ops_on_cpu_from_here"] == 5
    assert report.expected_tpu_ops == 0


def test_int16x8_blockers(model_path, capsys):
    report = check_model(model_path("int16x8"))
    messages = " ".join(f.message for f in report.blockers)
    assert "is INT16" in messages and "is INT64" in messages  # 16-bit activations, 64-bit biases
    assert report.first_unsupported["op"] == "CONV_2D" and report.first_unsupported["op_index"] == 1
    code, out, _ = run(["check", model_path("int16x8")], capsys)
    assert code == 1
    assert "First unsupported op: #1 CONV_2D" in out and "6 op(s)" in out


def test_fp16_and_dynamic_range_and_dynamic_shapes(model_path):
    fp16 = check_model(model_path("fp16"))
    assert any(f.kind == "unsupported_op" and f.op == "DEQUANTIZE" for f in fp16.blockers)
    assert any("FLOAT16" in f.message for f in fp16.blockers)
    assert not check_model(model_path("dynamic")).ok
    dyn = check_model(model_path("dynamic_hw"))
    assert any(f.kind == "dynamic_shape" for f in dyn.blockers)
    assert not dyn.warnings  # the batch cannot simply be pinned when H and W are dynamic too


def _edited(model_path, tmp_path, edit, name):
    model = read_model(model_path("int8_fixed_batch"))
    edit(model)
    path = tmp_path / name
    path.write_bytes(write_model(model))
    return str(path)


def test_rank_and_unsupported_op_blockers(model_path, tmp_path):
    s = summarize(model_path("int8_fixed_batch"))
    conv = next(op for op in s.ops if op.name == "CONV_2D")

    def four_d(model):  # the conv output with 4 dimensions larger than 1
        model.subgraphs[0].tensors[conv.outputs[0]].shape = [2, 8, 8, 8]

    report = check_model(_edited(model_path, tmp_path, four_d, "rank.tflite"))
    assert any(f.kind == "rank" and "more than 3 dimensions" in f.message for f in report.blockers)

    def hard_swish(model):
        code = model.operatorCodes[model.subgraphs[0].operators[conv.index].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.HARD_SWISH

    report = check_model(_edited(model_path, tmp_path, hard_swish, "hswish.tflite"))
    assert report.first_unsupported["op"] == "HARD_SWISH"


def test_compiled_model_is_recognized(model_path, tmp_path):
    def custom(model):
        model.operatorCodes.append(schema.OperatorCodeT(customCode="edgetpu-custom-op", builtinCode=32,
                                                        deprecatedBuiltinCode=32))
        ops = model.subgraphs[0].operators
        ops[1].opcodeIndex = len(model.operatorCodes) - 1

    report = check_model(_edited(model_path, tmp_path, custom, "compiled.tflite"))
    assert report.compiled and report.ok and report.expected_tpu_ops == 1
    assert "already compiled" in report.notes[0].message


def test_pin_batch_makes_shapes_static(model_path):
    data, changed = pin_batch(load_bytes(model_path("int8")))
    assert changed
    s = summarize(data)
    assert s.input_tensors()[0].shape_signature == (1, 8, 8, 1) and not s.dynamic_tensors()
    assert not check_model_bytes_warnings(data)
    make_interpreter(data).invoke()
    assert pin_batch(load_bytes(model_path("dynamic_hw"))) [1] is False
    assert pin_batch(load_bytes(model_path("int8_fixed_batch")))[1] is False


def check_model_bytes_warnings(data):
    from edge.edgetpu import check_summary

    return check_summary(summarize(data)).warnings


def test_edgetpu_compile_parses_log_from_fake_compiler(model_path, tmp_path, fake_compiler, capsys):
    out_dir = tmp_path / "out"
    out_json = tmp_path / "compile.json"
    code, out, err = run(["compile", model_path("int8"), "--out-dir", str(out_dir), "--json", str(out_json)],
                         capsys)
    assert code == 0, err
    assert (out_dir / "int8_edgetpu.tflite").is_file() and (out_dir / "int8_edgetpu.log").is_file()
    (r,) = json.loads(out_json.read_text())["results"]
    assert (r["tpu_ops"], r["cpu_ops"], r["total_ops"]) == (7, 0, 7)
    assert r["on_chip_memory_used_bytes"] == int(24.5 * 1024)
    assert r["off_chip_memory_used_bytes"] == 0 and r["version"] == "16.0.384591198"
    assert r["pinned_batch"] is True
    args = (tmp_path / "compiler_args.txt").read_text().split()
    assert args[:2] == ["-s", "-o"] and args[-1].endswith("int8.tflite") and args[-1] != model_path("int8")
    assert "ops on the Edge TPU: 7, on the CPU: 0" in out
    # The compiled model is not overwritten without --overwrite.
    code, _, err = run(["compile", model_path("int8"), "--out-dir", str(out_dir)], capsys)
    assert code == 1 and "--overwrite" in err


def test_edgetpu_compile_partial_mapping_from_fake_compiler(model_path, tmp_path, fake_compiler, capsys,
                                                            monkeypatch):
    monkeypatch.setenv("FAKE_COMPILER_MODE", "partial")
    code, out, _ = run(["compile", model_path("int8"), "--out-dir", str(tmp_path)], capsys)
    assert code == 0
    assert "ops on the Edge TPU: 4, on the CPU: 3" in out
    assert "on CPU: DEQUANTIZE x1: Operation is working on an unsupported data type" in out


def test_edgetpu_compile_failure_from_fake_compiler(model_path, tmp_path, fake_compiler, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_COMPILER_MODE", "fail")
    code, _, err = run(["compile", model_path("int8"), "--out-dir", str(tmp_path), "--keep-dynamic-batch"],
                       capsys)
    assert code == 1
    assert "only supports static-sized tensors" in err
    assert not (tmp_path / "int8_edgetpu.tflite").exists()


def test_compile_without_compiler_says_what_to_install(model_path, tmp_path, no_tools_path, capsys):
    code, _, err = run(["compile", model_path("int8"), "--out-dir", str(tmp_path)], capsys)
    assert code == 2 and "apt-get install edgetpu-compiler" in err and "Traceback" not in err


def test_check_bad_file(tmp_path, capsys):
    (tmp_path / "x.tflite").write_bytes(b"junk")
    code, _, err = run(["check", str(tmp_path / "x.tflite")], capsys)
    assert code == 2 and "not a .tflite model" in err


def test_parse_compiler_log_older_format_with_cpu_ops():
    log = """Edge TPU Compiler version 2.1.302470888

Model compiled successfully in 12264 ms.

Input model: model2.tflite
Input size: 8.11MiB
Output model: model2_edgetpu.tflite
Output size: 9.47MiB
On-chip memory used for caching model parameters: 6.86MiB
On-chip memory remaining for caching model parameters: 7.75KiB
Off-chip memory used for streaming uncached model parameters: 1.22MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 93
Operation log: model2_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 83
Number of operations that will run on CPU: 10

Operator                       Count      Status

LOGISTIC                       1          More than one subgraph is not supported
ADD                            10         Mapped to Edge TPU
"""
    r = parse_compiler_log(log)
    assert r["success"] and r["compile_ms"] == 12264 and r["version"] == "2.1.302470888"
    assert (r["tpu_ops"], r["cpu_ops"], r["total_ops"]) == (83, 10, 93)
    assert r["on_chip_memory_used_bytes"] == round(6.86 * 1024**2)
    assert r["off_chip_memory_used_bytes"] == round(1.22 * 1024**2)
    assert r["operators"][0] == {"op": "LOGISTIC", "count": 1, "status": "More than one subgraph is not supported",
                                 "on_tpu": False}


def test_parse_compiler_log_failure():
    r = parse_compiler_log("Edge TPU Compiler version 16.0.384591198\nInternal compiler error. Aborting!\n")
    assert not r["success"] and r["errors"] == ["Internal compiler error. Aborting!"]


@pytest.mark.parametrize("name", ["float32", "int16x8"])
def test_json_report_of_check(model_path, tmp_path, capsys, name):
    out_json = tmp_path / "check.json"
    code, _, _ = run(["check", model_path(name), "--json", str(out_json)], capsys)
    assert code == 1
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["ok"] is False and r["blockers"] and os.path.basename(r["model"]) == f"{name}.tflite"
