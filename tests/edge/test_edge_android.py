"""Android target: benchmark_model output variants and the adb flow against a fake device.

`fake_device` (tests/edge/conftest.py + fake_adb.py) is an adb test double that emulates a phone
on a local folder; no real adb or phone is involved.
"""

from __future__ import annotations

import json
import shlex

import pytest

import fake_adb
from edge import android
from edge.android import BenchmarkOutputError, build_command, parse_benchmark_output
from edge.bench import main, parse_args


def fmt(template: str) -> str:
    return template.format(graph="/data/local/tmp/m.tflite", runs=50, threads=4)


def test_parse_newer_format():
    r = parse_benchmark_output(fmt(fake_adb.NEW_OUTPUT))
    assert r["latency_ms"] == {"mean": pytest.approx(0.31025), "std": pytest.approx(0.022), "min": 0.28,
                               "p50": None, "p90": None, "p99": None, "max": 0.512, "count": 50}
    assert (r["init_ms"], r["first_ms"], r["warmup_avg_ms"]) == (3.184, 0.412, pytest.approx(0.31852))
    assert r["memory"] == {"init_mb": 1.85938, "overall_mb": 2.48047, "peak_mb": 5.26953}
    assert r["model_size_mb"] == 0.030264
    assert r["delegations"] == [{"delegate": "TfLiteXNNPackDelegate", "nodes": 7, "total": 7, "partitions": 1}]


def test_parse_older_format():
    r = parse_benchmark_output(fmt(fake_adb.OLD_OUTPUT))
    assert r["latency_ms"]["mean"] == pytest.approx(90.8659) and r["latency_ms"]["count"] == 50
    assert r["init_ms"] == 5.388 and r["first_ms"] == 101.726
    assert r["memory"] == {"init_mb": 2.30859, "overall_mb": 9.10547}


def test_parse_all_same_and_oldest_summary_and_logcat_prefix():
    r = parse_benchmark_output(fmt(fake_adb.ALLSAME_OUTPUT))
    assert (r["latency_ms"]["mean"], r["latency_ms"]["std"], r["latency_ms"]["count"]) == (20.0, 0.0, 50)
    oldest = ("Loaded model /data/local/tmp/m.tflite\n"
              "Average inference timings in us: Warmup: 130212, Init: 2961, no stats: 128226\n")
    r = parse_benchmark_output(oldest)
    assert r["latency_ms"]["mean"] == pytest.approx(128.226) and r["latency_ms"]["std"] is None
    assert r["init_ms"] == pytest.approx(2.961) and r["warmup_avg_ms"] == pytest.approx(130.212)
    logcat = ("05-12 10:00:00.000  1234  1234 I tflite  : Inference timings in us: Init: 1007529, "
              "First inference: 4098, Warmup (avg): 1686.59, Inference (avg): 1687.92\n")
    assert parse_benchmark_output(logcat)["latency_ms"]["mean"] == pytest.approx(1.68792)


def test_parse_gpu_partial_and_failures():
    r = parse_benchmark_output(fmt(fake_adb.GPU_PARTIAL_OUTPUT))
    assert r["delegations"][-1] == {"delegate": "TfLiteGpuDelegateV2", "nodes": 5, "total": 7, "partitions": 1}
    assert r["unsupported_ops"] == ["CUSTOM_OP_X"]
    with pytest.raises(BenchmarkOutputError, match="Failed to apply GPU delegate"):
        parse_benchmark_output(fmt(fake_adb.GPU_FAIL_OUTPUT))
    with pytest.raises(BenchmarkOutputError, match="cannot parse"):
        parse_benchmark_output(fake_adb.GARBAGE_OUTPUT)
    old_delegate_line = "INFO: Replacing 31 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions.\n"
    r = parse_benchmark_output(old_delegate_line + fmt(fake_adb.NEW_OUTPUT))
    assert r["delegations"][0] == {"delegate": "TfLiteGpuDelegateV2", "nodes": 31, "total": None, "partitions": 1}


def test_build_command():
    argv = build_command("/d/benchmark_model", "/d/a b.tflite", threads=2, runs=10, warmup=3, min_seconds=0.5,
                         use_xnnpack=False, use_gpu=True, use_nnapi=False, cpu_mask="f0")
    assert argv == ["taskset", "f0", "/d/benchmark_model", "--graph=/d/a b.tflite", "--num_runs=10",
                    "--warmup_runs=3", "--min_secs=0.5", "--use_xnnpack=false",
                    "--report_peak_memory_footprint=true", "--num_threads=2", "--use_gpu=true"]


def android_args(fake, models, *extra):
    return [*models, "--target", "android", "--adb", fake.adb, "--benchmark-binary", str(fake.binary),
            "--cooldown", "0", "--runs", "20", "--warmup", "2", *extra]


def run(argv, capsys):
    code = main(parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_adb_flow_quotes_every_argument_and_cleans_up(fake_device, model_path, tmp_path, capsys, monkeypatch):
    weird = tmp_path / "my model;touch PWNED $(id).tflite"
    weird.write_bytes(open(model_path("int8"), "rb").read())
    sleeps = []
    monkeypatch.setattr(android, "cool_down", sleeps.append)
    out_json = tmp_path / "android.json"
    code, out, err = run(android_args(fake_device, [model_path("float32"), str(weird)], "--threads", "4",
                                      "--cpu-mask", "f0", "--use-nnapi", "--cooldown", "0.25",
                                      "--json", str(out_json)), capsys)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["device"] == {"serial": "emulator-5554", "model": "Fake Pixel", "android": "14",
                                "abi": "arm64-v8a"}
    results = report["results"]
    assert [r["status"] for r in results] == ["ok", "ok"]
    r = results[1]
    assert (r["target"], r["delegate"], r["threads"], r["warmup"], r["runs"]) == ("android", "nnapi", 4, 2, 20)
    assert r["latency_ms"]["count"] == 20 and r["peak_rss_mb"] == 5.26953
    assert r["coverage"]["delegated_ops"] == 7 and r["interpreter"]["name"] == "benchmark_model"
    assert sleeps == [0.25]  # one cool-down between the two models
    bench_cmds = [c for c in fake_device.shell_commands() if "benchmark_model" in c and "--graph" in c]
    assert len(bench_cmds) == 2
    argv = shlex.split(bench_cmds[1])  # what the device shell sees
    assert argv[:2] == ["taskset", "f0"]
    assert argv[3] == "--graph=/data/local/tmp/tfq_bench/1_my model;touch PWNED $(id).tflite"
    assert {"--num_threads=4", "--use_nnapi=true", "--use_xnnpack=true", "--num_runs=20",
            "--warmup_runs=2"} <= set(argv)
    assert not list(tmp_path.rglob("PWNED*")) and not list(fake_device.root.rglob("PWNED*"))
    assert fake_device.files() == []  # remote folder removed at the end
    assert fake_device.shell_commands()[-1] == "rm -rf /data/local/tmp/tfq_bench"


def test_adb_serial_selection(fake_device, model_path, capsys):
    fake_device.set(FAKE_ADB_DEVICES="AAA:device,BBB:device")
    code, _, err = run(android_args(fake_device, [model_path("int8")]), capsys)
    assert code == 2 and "several devices attached (AAA, BBB); choose one with --serial" in err
    code, _, err = run(android_args(fake_device, [model_path("int8")], "--serial", "BBB"), capsys)
    assert code == 0, err
    assert all(c[:2] == ["-s", "BBB"] for c in fake_device.calls() if c[0] != "devices")
    code, _, err = run(android_args(fake_device, [model_path("int8")], "--serial", "CCC"), capsys)
    assert code == 2 and "device 'CCC' is not attached" in err


def test_adb_no_device(fake_device, model_path, capsys):
    fake_device.set(FAKE_ADB_DEVICES="")
    code, _, err = run(android_args(fake_device, [model_path("int8")]), capsys)
    assert code == 2 and "no Android device attached" in err and "Traceback" not in err


def test_adb_unauthorized_device(fake_device, model_path, capsys):
    fake_device.set(FAKE_ADB_DEVICES="R58M:unauthorized")
    code, _, err = run(android_args(fake_device, [model_path("int8")]), capsys)
    assert code == 2 and "unauthorized" in err and "Allow USB debugging" in err


def test_adb_device_disappears_mid_run_keeps_measured(fake_device, model_path, tmp_path, capsys):
    fake_device.set(FAKE_ADB_GONE_AFTER="1")
    out_json = tmp_path / "a.json"
    models = [model_path("float32"), model_path("int8"), model_path("fp16")]
    code, out, err = run(android_args(fake_device, models, "--json", str(out_json)), capsys)
    assert code == 1
    results = json.loads(out_json.read_text())["results"]
    assert [r["status"] for r in results] == ["ok", "error", "skipped"]
    assert results[0]["latency_ms"]["count"] == 20
    assert "is gone" in results[1]["error"] and "not measured" in results[2]["error"]
    assert "is gone" in err and "Traceback" not in err


def test_adb_timeout_is_reported_and_cleaned_up(fake_device, model_path, tmp_path, capsys):
    fake_device.set(FAKE_BENCH_SLEEP="5")
    out_json = tmp_path / "a.json"
    code, _, err = run(android_args(fake_device, [model_path("int8")], "--timeout", "1", "--json",
                                    str(out_json)), capsys)
    assert code == 1
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["status"] == "error" and "timed out after 1 s" in r["error"]
    assert any(c.startswith("pkill -f") for c in fake_device.shell_commands())
    assert fake_device.files() == []


def test_adb_binary_not_executable(fake_device, model_path, tmp_path, capsys):
    fake_device.set(FAKE_ADB_NOEXEC="1")
    out_json = tmp_path / "a.json"
    code, _, err = run(android_args(fake_device, [model_path("int8"), model_path("float32")], "--json",
                                    str(out_json)), capsys)
    assert code == 1 and "cannot run on the device" in err
    assert [r["status"] for r in json.loads(out_json.read_text())["results"]] == ["error", "skipped"]


def test_adb_unparsable_output(fake_device, model_path, tmp_path, capsys):
    fake_device.set(FAKE_BENCH_OUTPUT="garbage")
    out_json = tmp_path / "a.json"
    code, _, err = run(android_args(fake_device, [model_path("int8"), model_path("float32")], "--json",
                                    str(out_json)), capsys)
    assert code == 1
    results = json.loads(out_json.read_text())["results"]
    assert [r["status"] for r in results] == ["error", "error"]  # per-model failure: the run goes on
    assert "cannot parse benchmark_model output" in results[0]["error"]
    assert "Segmentation fault" in results[0]["output_tail"][0]


@pytest.mark.parametrize("variant", ["old", "allsame"])
def test_adb_output_variants(fake_device, model_path, tmp_path, capsys, variant):
    fake_device.set(FAKE_BENCH_OUTPUT=variant)
    code, out, err = run(android_args(fake_device, [model_path("int8")]), capsys)
    assert code == 0, err and "| int8.tflite" in out


def test_adb_gpu_partial_delegation(fake_device, model_path, tmp_path, capsys):
    fake_device.set(FAKE_BENCH_OUTPUT="gpu_partial")
    out_json = tmp_path / "a.json"
    code, _, _ = run(android_args(fake_device, [model_path("int8")], "--use-gpu", "--json", str(out_json)), capsys)
    assert code == 1
    (r,) = json.loads(out_json.read_text())["results"]
    assert "took 5 of 7 ops" in r["error"] and "CUSTOM_OP_X" in r["error"]
    assert r["latency_ms"]["mean"] == pytest.approx(1.5005)  # measurements kept
    code, _, _ = run(android_args(fake_device, [model_path("int8")], "--use-gpu", "--allow-fallback", "--json",
                                  str(out_json), "--overwrite"), capsys)
    assert code == 0
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["status"] == "ok" and r["fallback"].startswith("partial")


def test_adb_gpu_failure_falls_back_to_cpu_when_allowed(fake_device, model_path, tmp_path, capsys):
    fake_device.set(FAKE_BENCH_OUTPUT="gpu_fail")
    code, _, _ = run(android_args(fake_device, [model_path("int8")], "--use-gpu"), capsys)
    assert code == 1
    out_json = tmp_path / "a.json"
    code, out, _ = run(android_args(fake_device, [model_path("int8")], "--use-gpu", "--allow-fallback",
                                    "--json", str(out_json)), capsys)
    assert code == 0 and "ok (fallback)" in out
    (r,) = json.loads(out_json.read_text())["results"]
    assert r["fallback"] == "cpu: GPU delegate failed" and r["delegate"] == "xnnpack"
    gpu_runs = [c for c in fake_device.shell_commands() if "--use_gpu=true" in c]
    assert len(gpu_runs) == 2  # once without fallback, once before falling back


def test_adb_missing_tool_or_binary(model_path, tmp_path, capsys, no_tools_path):
    code, _, err = run([model_path("int8"), "--target", "android", "--benchmark-binary", str(tmp_path / "nope")],
                       capsys)
    assert code == 2 and "benchmark binary not found" in err
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"x")
    code, _, err = run([model_path("int8"), "--target", "android", "--benchmark-binary", str(binary)], capsys)
    assert code == 2 and "apt-get install adb" in err


def test_android_eval_is_refused_clearly(fake_device, model_path, eval_npz, capsys):
    code, _, err = run(android_args(fake_device, [model_path("int8")], "--eval", eval_npz), capsys)
    assert code == 2 and "--eval is not available with --target android" in err
    assert fake_device.calls() == []  # refused before touching the device


def test_list_devices(fake_device, capsys):
    fake_device.set(FAKE_ADB_DEVICES="AAA:device,BBB:unauthorized")
    code, out, _ = run(["--list-devices", "--adb", fake_device.adb], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("AAA\tdevice\tproduct:fake") and out.splitlines()[1] == "BBB\tunauthorized"
