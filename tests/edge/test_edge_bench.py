"""edge.bench on the committed tiny models: CPU runs in worker processes, delegates through test doubles.

No GPU delegate library or libedgetpu exists on the test machine: the gpu and
edgetpu tests run the real code up to loading the delegate and check the
messages and the --allow-fallback path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_support import subprocess_env
from edge import bench
from edge.bench import BenchSpec, main, parse_args, run_spec, run_worker
from edge.data import Preprocessing, load_eval

FAST = ["--runs", "5", "--warmup", "1", "--threads", "1"]


def run(argv, capsys):
    code = main(parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_side_by_side_table_and_json(tmp_path, capsys, model_path, eval_npz):
    out_json = tmp_path / "bench.json"
    models = [model_path(n) for n in ("float32", "int8", "int8_uint8io", "int16x8_int16io", "fp16")]
    out_md = tmp_path / "bench.md"
    code, out, err = run([*models, *FAST, "--eval", eval_npz, "--json", str(out_json), "--markdown", str(out_md)],
                         capsys)
    assert code == 0, err
    lines = [l for l in out.splitlines() if l.startswith("| ")]
    assert len(lines) == 1 + len(models)  # header + one row per model
    assert all(os.path.basename(m) in out for m in models)
    report = json.loads(out_json.read_text())
    assert report["interpreter"]["name"] == "ai_edge_litert"
    host = report["host"]
    assert isinstance(host["cpu_features"], list) and host["cpu_model"]
    md = out_md.read_text()
    assert sum(l.startswith("| ") for l in md.splitlines()) == len(models) + 1 and f"Host CPU: {host['cpu_model']}" in md
    for r in report["results"]:
        assert r["status"] == "ok"
        assert (r["target"], r["delegate"], r["threads"], r["warmup"], r["runs"]) == ("cpu", "xnnpack", 1, 1, 5)
        assert r["interpreter"] == {"name": "ai_edge_litert", "version": "2.3.0",
                                    "module": "ai_edge_litert.interpreter"}
        lat = r["latency_ms"]
        assert lat["count"] == r["measured_runs"] >= 5
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["init_ms"] > 0 and r["first_ms"] > 0 and r["throughput_ips"] > 0
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
        assert r["size_bytes"] == os.path.getsize(r["path"])
        assert r["accuracy"]["n"] == 64 and r["accuracy"]["top1"] >= 0.9 and r["accuracy"]["agreement"] >= 0.9
        assert r["accuracy"]["reference"] == "float32.tflite"
    by_name = {r["model"]: r for r in report["results"]}
    assert by_name["float32.tflite"]["accuracy"]["agreement"] == 1.0
    assert by_name["int16x8_int16io.tflite"]["inputs"][0]["dtype"] == "int16"
    assert by_name["int8_uint8io.tflite"]["coverage"]["cpu_ops"] == {"QUANTIZE": 2}


def test_no_xnnpack_uses_builtin_kernels(capsys, tmp_path, model_path):
    out_json = tmp_path / "b.json"
    code, out, _ = run([model_path("float32"), *FAST, "--no-xnnpack", "--json", str(out_json)], capsys)
    assert code == 0
    (r,) = json.loads(out_json.read_text())["results"]
    assert (r["delegate"], r["xnnpack"], r["coverage"]["delegated_ops"]) == ("none", False, 0)


def test_min_seconds_extends_the_run():
    spec = BenchSpec(model=os.path.join(os.path.dirname(__file__), "..", "data", "int8.tflite"),
                     runs=1, warmup=0, min_seconds=0.2, threads=1)
    r = run_spec(spec)
    assert r["measured_runs"] > 1
    assert r["measured_runs"] * r["latency_ms"]["mean"] < 1000  # sanity: milliseconds


def test_batch_and_input_shape(model_path):
    r = run_spec(BenchSpec(model=model_path("int8"), runs=2, warmup=0, batch=4))
    assert r["timed_batch"] == 4
    r = run_spec(BenchSpec(model=model_path("dynamic_hw"), runs=2, warmup=0, input_shape=(1, 16, 16, 1)))
    assert r["status"] == "ok" and r["timed_batch"] == 1
    with pytest.raises(Exception, match="fixed batch of 1"):
        run_spec(BenchSpec(model=model_path("int8_fixed_batch"), runs=2, warmup=0, batch=4))


def test_json_is_not_clobbered_without_overwrite(tmp_path, capsys, model_path):
    out_json = tmp_path / "bench.json"
    out_json.write_text("precious")
    code, _, err = run([model_path("int8"), *FAST, "--json", str(out_json)], capsys)
    assert code == 2 and "--overwrite" in err and out_json.read_text() == "precious"
    code, _, _ = run([model_path("int8"), *FAST, "--json", str(out_json), "--overwrite"], capsys)
    assert code == 0 and json.loads(out_json.read_text())["results"][0]["status"] == "ok"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_bad_models_give_clear_errors_and_others_still_run(tmp_path, capsys, model_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(model_path("int8"), "rb").read()[:5000])
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    out_json = tmp_path / "b.json"
    code, out, err = run([model_path("int8"), str(empty), str(truncated), str(corrupt),
                          str(tmp_path / "missing.tflite"), *FAST, "--json", str(out_json)], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert "empty.tflite: model is empty" in err
    assert "truncated.tflite: truncated or corrupted model" in err
    assert "missing.tflite: model file not found" in err
    statuses = [r["status"] for r in json.loads(out_json.read_text())["results"]]
    assert statuses == ["ok", "error", "error", "error", "error"]
    assert "4 of 5 model(s) failed" in err


def test_eval_npz_that_does_not_fit_the_model(tmp_path, capsys, model_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 9, 9, 1), np.uint8), labels=np.zeros(4, np.int64))
    code, _, err = run([model_path("int8"), *FAST, "--eval", str(bad)], capsys)
    assert code == 2
    assert "images have shape (4, 9, 9, 1) but int8.tflite expects input (-1, 8, 8, 1)" in err
    nolabels = tmp_path / "nolabels.npz"
    np.savez(nolabels, images=np.zeros((4, 8, 8, 1), np.uint8))
    code, _, err = run([model_path("int8"), *FAST, "--eval", str(nolabels)], capsys)
    assert code == 2 and "lacks key 'labels'" in err


def test_preprocessing_json_and_float_images(tmp_path, eval_npz):
    pre_path = tmp_path / "preprocessing.json"
    pre_path.write_text(json.dumps({"image_size": [8, 8], "channels": 1, "scale": 0.5, "mean": [2.0],
                                    "std": [4.0]}))
    pre = Preprocessing.load(tmp_path)  # a directory means <dir>/preprocessing.json
    assert pre.apply(np.array([[[[20]]]], np.uint8)).item() == pytest.approx((20 * 0.5 - 2.0) / 4.0)
    data = load_eval(eval_npz, pre, limit=3)
    raw = np.load(eval_npz)["images"][:3]
    np.testing.assert_allclose(data.x, (raw * 0.5 - 2.0) / 4.0, rtol=1e-6)
    floats = tmp_path / "floats.npz"
    np.savez(floats, images=np.full((2, 8, 8, 1), 0.25, np.float32), labels=np.array([[0, 1], [1, 0]]))
    f = load_eval(floats, pre)
    assert f.x.max() == 0.25 and f.labels.tolist() == [1, 0]  # float images as-is, one-hot labels


def test_reference_model_outside_the_list(tmp_path, capsys, model_path, eval_npz):
    out_json = tmp_path / "b.json"
    code, _, _ = run([model_path("int8"), *FAST, "--eval", eval_npz, "--reference", model_path("float32"),
                      "--json", str(out_json)], capsys)
    assert code == 0
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["accuracy"]["reference"] == "float32.tflite" and r["accuracy"]["agreement"] >= 0.9


def test_gpu_without_library_reports_clear_error(tmp_path, capsys, model_path, monkeypatch):
    monkeypatch.delenv(bench.GPU_LIB_ENV, raising=False)
    code, out, err = run([model_path("int8"), *FAST, "--target", "gpu"], capsys)
    assert code == 1
    assert "no gpu delegate library given" in err and "--allow-fallback" in err and "Traceback" not in err


def test_gpu_with_missing_library_and_fallback_marks_result(tmp_path, capsys, model_path, monkeypatch):
    monkeypatch.setenv(bench.GPU_LIB_ENV, str(tmp_path / "libtensorflowlite_gpu_delegate.so"))
    code, _, err = run([model_path("int8"), *FAST, "--target", "gpu"], capsys)
    assert code == 1 and "cannot load delegate library" in err
    out_json = tmp_path / "b.json"
    code, out, _ = run([model_path("int8"), *FAST, "--target", "gpu", "--allow-fallback", "--json",
                        str(out_json)], capsys)
    assert code == 0 and "ok (fallback)" in out
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["fallback"].startswith("cpu: ") and r["delegate"] == "xnnpack" and r["target"] == "gpu"


def test_edgetpu_without_runtime_says_what_to_install(tmp_path, capsys, model_path, monkeypatch):
    monkeypatch.setenv(bench.EDGETPU_LIB_ENV, str(tmp_path / "libedgetpu.so.1"))
    code, _, err = run([model_path("int8"), *FAST, "--target", "edgetpu"], capsys)
    assert code == 1 and "libedgetpu1-std" in err


def test_worker_crash_is_reported_not_propagated(tmp_path, model_path, monkeypatch):
    """An interpreter double that dies by SIGSEGV stands in for a model crashing the runtime."""
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crasher))
    r = run_worker(BenchSpec(model=model_path("int8")))
    assert r["status"] == "error" and "signal SIGSEGV" in r["error"]


def test_worker_timeout(tmp_path, model_path, monkeypatch):
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nexec sleep 30\n")
    sleeper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(sleeper))
    r = run_worker(BenchSpec(model=model_path("int8")), timeout=0.5)
    assert r["status"] == "error" and "timed out" in r["error"]


def test_cli_as_subprocess(model_path, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edge.bench", model_path("int8"), "--runs", "3",
                           "--warmup", "0"], capture_output=True, text=True, env=subprocess_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| int8.tflite" in proc.stdout
    assert os.listdir(tmp_path) == []  # nothing written to the working directory


def test_usage_errors(capsys, model_path):
    code, _, err = run([], capsys)
    assert code == 2 and "at least one MODEL" in err
    code, _, err = run([model_path("int8"), "--runs", "0"], capsys)
    assert code == 2 and "--runs must be >= 1" in err
    code, _, err = run([model_path("int8"), "--input-shape", "1,x"], capsys)
    assert code == 2 and "comma-separated integers" in err
    code, _, err = run([model_path("int8"), "--delegate-option", "device"], capsys)
    assert code == 2 and "KEY=VALUE" in err


def test_overhead_benchmark_script_runs(tmp_path, capsys, model_path):
    """Smoke test of the overhead benchmark; its 5% target is checked on real models, not here."""
    from edge.benchmarks import edge_overhead

    code = edge_overhead.main(edge_overhead.parse_args([model_path("int8"), "--runs", "3", "--warmup", "0",
                                                        "--rounds", "1", "--out", str(tmp_path)]))
    out, _ = capsys.readouterr()
    assert code in (0, 1) and "| int8.tflite" in out
    report = json.loads((tmp_path / "edge_overhead.json").read_text())
    (row,) = report["results"]
    assert row["bare_p50_ms"] > 0 and row["ratio_worker"] > 0 and (tmp_path / "edge_overhead.md").is_file()
