"""The report: collecting run directories, plots, Markdown and self-contained HTML.

Most tests build small run directories in the layouts the stages write (the
``.tflite`` files are the committed fixtures in ``tests/data``), so they run
in seconds without TensorFlow; one test reads a real training run.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tfq import plots
from tfq.reporting.build import build_report
from tfq.reporting.collect import Stat, collect, summarize_bench
from tfq.reporting.document import Heading, Image, Paragraph, Table, to_html, to_markdown
from tfq.rundir import RunDir, write_json

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parents[1]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails on anything that is not a PNG)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_readable_png(path: Path) -> None:
    w, h = png_size(path)
    assert 500 <= w <= 2400 and 300 <= h <= 2400, (path.name, w, h)
    assert 8_000 < path.stat().st_size < 1_500_000, (path.name, path.stat().st_size)


# --------------------------------------------------------------------------- synthetic run directories


def _run(path: Path, kind: str, command: list[str] | None = None) -> RunDir:
    run = RunDir.create(kind=kind, out=path, meta={"model": "smallcnn", "dataset": "digits"})
    if command:
        run.update_manifest(command=command)
    return run


def make_train(path: Path, top1: float = 0.9) -> Path:
    run = _run(path, "train", ["python", "-m", "pipelines.train", "--out", str(path)])
    run.write_json("results.json", {"test_top1": top1, "test_top5": 0.99, "val_top1": top1 + 0.01})
    for e in range(1, 4):
        run.append_jsonl("metrics.jsonl", {"epoch": e, "top1": 0.5 + 0.1 * e, "val_top1": 0.5 + 0.1 * e})
    run.mark_complete()
    return path


def make_ptq(path: Path) -> Path:
    """The layout pipelines.ptq writes: <name>.tflite files and results.json rows."""
    run = _run(path, "ptq", ["python", "-m", "pipelines.ptq", "--out", str(path)])
    rows = []
    for name, fixture, mode, method, top1, sqnr in [
        ("fp32", "float32.tflite", "fp32", None, 0.90, 120.0),
        ("fp16", "fp16.tflite", "fp16", None, 0.90, 80.0),
        ("int8_minmax", "int8.tflite", "int8", "minmax", 0.88, 25.0),
        ("int8_kl", "int8_uint8io.tflite", "int8", "kl", 0.89, 27.5),
        ("int16x8_minmax", "int16x8.tflite", "int16x8", "minmax", 0.899, 45.0),
        ("int16x8_kl", "int16x8_int16io.tflite", "int16x8", "kl", 0.898, 44.0),
    ]:
        shutil.copy(DATA / fixture, path / f"{name}.tflite")
        size = (path / f"{name}.tflite").stat().st_size
        rows.append({
            "name": name, "mode": mode, "method": method, "file": f"{name}.tflite", "top1": top1, "top5": 0.99,
            "agreement": 0.97, "sqnr_db": sqnr, "size_bytes": size, "size_ratio": None,
            "latency_ms": {"1": {"p50": 1.0, "p90": 1.2}, "2": {"p50": 0.6, "p90": 0.8}},
            "test_images": 40 if mode == "int16x8" else 300,  # as with --int16x8-test-samples 40
        })
    run.write_json("results.json", {"rows": rows, "modes": ["fp32", "int8"], "failures": [], "test_samples": 300})
    run.mark_complete()
    return path


def make_qat(path: Path, top1: float = 0.895) -> Path:
    run = _run(path, "qat")
    shutil.copy(DATA / "int8.tflite", path / "model_qat_int8.tflite")
    run.write_json("results.json", {"tflite": {"top1": top1, "top5": 0.99, "agreement": 0.98, "sqnr_db": 30.0},
                                    "model_file": "model_qat_int8.tflite"})
    for e in range(1, 4):
        run.append_jsonl("metrics.jsonl", {"epoch": e, "val_top1": 0.86 + 0.01 * e, "loss": 0.5 / e})
    run.mark_complete()
    return path


def make_mixed(path: Path) -> Path:
    """The layout pipelines.mixed writes."""
    run = _run(path, "mixed")
    shutil.copy(DATA / "dynamic.tflite", path / "mixed.tflite")
    test = {"top1": 0.893, "top5": 0.99, "agreement": 0.97, "sqnr_db": 22.0, "size_bytes": 27664,
            "size_ratio": 0.3, "latency_ms": 0.9, "latency_stats": {"1": {"p50": 0.9, "p90": 1.0}}}
    run.write_json("results.json", {"budget": {"max_drop": 1.0}, "met": True, "model_file": "mixed.tflite",
                                    "plan": {"name": "mixed"},
                                    "chosen": {"test": test, "layers_by_precision": {"int8": 3, "fp16": 1}}})
    run.mark_complete()
    return path


def make_sensitivity(path: Path, layers: int = 6) -> Path:
    run = _run(path, "sensitivity")
    run.write_json("sensitivity.json", {
        "config": {"variants": ["only_int8", "all_but_int8", "weights_int4"]},
        "layers": [{"name": f"stage{i}_conv", "rank": i + 1, "op_type": "CONV_2D", "weights": 100,
                    "scores": {"only_int8": {"sqnr_db": 20.0 + 3 * i, "drop": 0.1},
                               "all_but_int8": {"sqnr_db": 30.0, "drop": 0.0},
                               "weights_int4": None if i == 2 else {"sqnr_db": 15.0 + i, "drop": 1.0}}}
                   for i in range(layers)],
        "reference": {},
    })
    run.mark_complete()
    return path


def make_experiment(root: Path, repeats: int = 2) -> Path:
    """An experiment directory with every stage, bench measurements repeated ``repeats`` times."""
    exp = root / "exp"
    _run(exp, "experiment", ["python", "-m", "pipelines.experiment", "--config", "x.yaml"])
    write_json(exp / "environment.json", {"versions": {"TensorFlow": "2.21.0", "LiteRT (ai-edge-litert)": "2.3.0"},
                                          "cpu_model": "Test CPU 3000", "logical_cores": 8, "usable_cores": 2,
                                          "cpu_features": ["avx2", "fma"], "int8_dot_product": None,
                                          "python": "3.11", "system": "Linux", "machine": "x86_64"})
    units = {}
    for i, (name, maker) in enumerate([("train", make_train), ("ptq", make_ptq), ("sensitivity", make_sensitivity),
                                       ("qat", make_qat), ("mixed", make_mixed)]):
        maker(exp / name)
        units[name] = {"stage": name, "replica": 0, "dir": name, "status": "complete", "hash": "h", "digest": "d",
                       "started": f"2026-01-01T00:00:0{i}", "commands": [["python", "-m", f"pipelines.{name}"]]}
    make_train(exp / "train.rep1", top1=0.92)
    units["train.rep1"] = {**units["train"], "replica": 1, "dir": "train.rep1", "started": "2026-01-01T00:01:00"}
    bench = _run(exp / "bench", "bench")
    measurements = []
    for f in [*sorted((exp / "ptq").glob("*.tflite")), exp / "qat" / "model_qat_int8.tflite",
              exp / "mixed" / "mixed.tflite"]:
        rel = f"{f.parent.name}/{f.name}"
        base = 0.5 if "int8" in f.name else 1.0
        for threads in (1, 2):
            for k in range(repeats):
                measurements.append({"file": rel, "stage": f.parent.name, "target": "cpu", "threads": threads,
                                     "repeat": k, "status": "ok", "peak_rss_mb": 50.0 + k,
                                     "latency_ms": {"p50": base / threads + 0.01 * k,
                                                    "p90": 1.2 * base / threads + 0.01 * k}})
    bench.write_json("results.json", {"setup": {"runs": 20, "warmup": 2, "repeats": repeats,
                                                "interpreter": {"name": "ai_edge_litert", "version": "2.3.0"}},
                                      "measurements": measurements})
    bench.mark_complete()
    units["bench"] = {**units["train"], "stage": "bench", "dir": "bench", "started": "2026-01-01T00:00:09",
                      "commands": [["python", "-m", "edge.bench", "x.tflite"]]}
    units["ptq.old"] = {"stage": "ptq", "dir": "ptq.old", "status": "dropped"}
    write_json(exp / "stages.json", {"version": 1, "units": units})
    RunDir(exp).mark_complete()
    return exp


# --------------------------------------------------------------------------- plots


def test_pareto_indices():
    xs = [1.0, 2.0, 3.0, 2.5, float("nan"), 0.5]
    ys = [80.0, 85.0, 84.0, 90.0, 99.0, 70.0]
    # (0.5,70) (1,80) (2,85) (2.5,90) on the front; (3,84) is beaten by (2,85); NaN never
    assert plots.pareto_indices(xs, ys) == [5, 0, 1, 3]
    assert plots.pareto_indices([1.0, 1.0], [5.0, 5.0]) == [0, 1]


def test_tradeoff_plot_is_a_readable_png(tmp_path):
    pts = [plots.Point("fp32", "FP32", 4.0, 90.0), plots.Point("int8", "PTQ", 1.0, 89.0, 0.01, 0.2),
           plots.Point("qat", "QAT", 1.0, 89.6), plots.Point("mixed", "mixed", 1.4, 89.8)]
    out = plots.plot_tradeoff(pts, tmp_path / "t.png", xlabel="size (MB)", reference=("FP32 Keras", 90.1))
    assert_readable_png(out)


def test_layer_and_bar_plots(tmp_path):
    names = [f"layer{i}" for i in range(30)]
    assert_readable_png(plots.plot_layer_scores(names, {"only_int8": list(range(30)), "w4": [None] * 30},
                                                tmp_path / "s.png", xlabel="SQNR (dB)"))
    assert_readable_png(plots.plot_grouped_bars({"int8": {"minmax": 88.0, "kl": 89.0}, "int16x8": {"minmax": 89.9}},
                                                tmp_path / "c.png", ylabel="top-1 (%)",
                                                second={"int8": {"minmax": 25.0, "kl": 27.0}}, second_ylabel="dB"))
    assert_readable_png(plots.plot_curves({"qat": ([1, 2, 3], [80.0, None, 85.0])}, tmp_path / "q.png",
                                          references={"FP32": 86.0}))


# --------------------------------------------------------------------------- collecting


def test_summarize_bench_mean_and_std():
    ms = [{"file": "a", "target": "cpu", "threads": 1, "status": "ok", "latency_ms": {"p50": v, "p90": v + 1},
           "peak_rss_mb": 10.0} for v in (1.0, 3.0)]
    ms.append({"file": "a", "target": "cpu", "threads": 1, "status": "error", "error": "crash"})
    (cell,) = summarize_bench(ms)
    assert cell["p50"] == {"mean": 2.0, "std": 1.0, "n": 2}
    assert cell["repeats"] == 3 and cell["errors"] == ["crash"]
    assert Stat.of([]) is None and Stat.of([2.0]).n == 1


def test_collect_experiment_joins_bench_seeds_and_ratios(tmp_path):
    c = collect([make_experiment(tmp_path)])
    by = {r.label: r for r in c.rows}
    assert set(by) >= {"FP32 (Keras)", "fp32", "fp16", "int8_minmax", "int8_kl", "QAT int8", "mixed"}
    keras = by["FP32 (Keras)"]
    assert keras.top1.n == 2 and keras.top1.mean == pytest.approx(0.91) and keras.top1.std == pytest.approx(0.01)
    int8 = by["int8_minmax"]
    assert int8.calibration == "minmax" and int8.mode == "int8"
    assert int8.size_ratio == pytest.approx(30264 / 91768)
    assert int8.latency[("cpu", 1, "bench")]["p50"].n == 2
    assert ("cpu", 1, "stage") not in int8.latency  # bench replaces the stage's own timing
    assert int8.peak_rss_mb["cpu"].mean == pytest.approx(50.5)
    assert "test images" not in int8.note and "first 40 of 300 test images" in by["int16x8_kl"].note
    assert by["QAT int8"].top1.mean == pytest.approx(0.895)
    assert by["mixed"].family == "mixed" and "fp16 x1" in by["mixed"].note
    assert c.sensitivity and c.qat_curves and c.environment["cpu_model"] == "Test CPU 3000"
    assert [name for name, _ in c.commands][:4] == ["experiment", "train", "ptq", "sensitivity"]
    assert not any("ptq.old" in n for n in c.notes)


def test_unknown_results_layout_becomes_a_note(tmp_path):
    run = _run(tmp_path / "ptq", "ptq")
    shutil.copy(DATA / "int8.tflite", run.path / "int8.tflite")
    run.write_json("results.json", {"something": "else"})
    run.mark_complete()
    c = collect([run.path])
    assert [r.label for r in c.rows] == ["int8"] and c.rows[0].size_bytes == 30264
    assert any("known layout" in n for n in c.notes)


def test_collect_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError):
        collect([tmp_path / "missing"])
    with pytest.raises(ValueError, match="not a tfq run directory"):
        collect([tmp_path])
    _run(tmp_path / "odd", "calibration")
    with pytest.raises(ValueError, match="unknown run kind 'calibration'.*experiment, train, ptq"):
        collect([tmp_path / "odd"])


# --------------------------------------------------------------------------- the report


def test_full_report_from_an_experiment(tmp_path):
    exp = make_experiment(tmp_path)
    written = build_report([exp], tmp_path / "out")
    names = {p.name for p in written["plots"]}
    assert names == {"acc_vs_size.png", "acc_vs_latency.png", "acc_vs_latency_cpu-t2.png", "qat_curve.png",
                     "sensitivity.png", "calibration_methods.png"}
    for p in written["plots"]:
        assert_readable_png(p)
    md = written["markdown"].read_text()
    for text in ("| variant", "top-1 (%)", "SQNR (dB)", "ratio", "cpu 1 thr p50 (ms)", "cpu 2 thr p90 (ms)",
                 "peak RSS cpu (MB)", "91.00 ± 1.00", "50.5 ± 0.5", "Test CPU 3000", "2.21.0", "ai_edge_litert 2.3.0",
                 "avx2, fma; no int8 dot-product instruction",
                 "python -m pipelines.experiment --config x.yaml", "python -m edge.bench x.tflite",
                 "Pareto-optimal by size", "first 40 of 300 test images"):
        assert text in md, text
    for png in names:
        assert f"]({png})" in md
    html = written["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") == len(names)
    assert ".png\"" not in html  # self-contained: no file references
    rows = json.loads(written["json"].read_text())["rows"]
    assert rows[0]["label"] == "FP32 (Keras)" and rows[0]["top1"]["n"] == 2


def test_report_refuses_to_overwrite_without_flag(tmp_path, capsys):
    from pipelines.report import main, parse_args

    exp = make_experiment(tmp_path)
    assert main(parse_args([str(exp)])) == 0
    assert (exp / "report" / "report.html").is_file()
    assert main(parse_args([str(exp)])) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(parse_args([str(exp), "--overwrite", "--title", "My title"])) == 0
    assert (exp / "report" / "report.md").read_text().startswith("# My title")


def test_report_on_separate_stage_dirs(tmp_path):
    ptq, qat = make_ptq(tmp_path / "ptq"), make_qat(tmp_path / "qat")
    written = build_report([ptq, qat], tmp_path / "out")
    md = written["markdown"].read_text()
    assert "QAT int8" in md and "int16x8_kl" in md
    assert "cpu 2 thr (stage) p50 (ms)" in md  # no bench: the stage's own latency, marked
    assert {p.name for p in written["plots"]} >= {"acc_vs_size.png", "calibration_methods.png", "qat_curve.png"}
    assert "python -m pipelines.ptq" in md


def test_report_on_a_real_training_run(tiny_baseline, tmp_path):
    written = build_report([tiny_baseline], tmp_path / "out")
    md = written["markdown"].read_text()
    assert "FP32 (Keras)" in md and "smallcnn / digits" in md
    assert written["plots"] == []  # no .tflite, no trade-off plots


def test_report_bad_paths_exit_2(tmp_path, capsys):
    from pipelines.report import main, parse_args

    assert main(parse_args([str(tmp_path / "nope")])) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_report_cli_subprocess(tmp_path, subprocess_env):
    exp = make_experiment(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pipelines.report", str(exp), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=subprocess_env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and (tmp_path / "r" / "report.html").is_file()


def test_documents_escape_text(tmp_path):
    blocks = [Heading("A <b> & c", 1), Paragraph("use `x|y` <here>"),
              Table(("a|b", "c"), (("1|2", "<3>"),)), Image("i.png", "alt \"q\"")]
    plots.plot_curves({"x": ([1, 2], [1.0, 2.0])}, tmp_path / "i.png")
    md = to_markdown(blocks)
    assert "1\\|2" in md and "![alt \"q\"](i.png)" in md
    html = to_html(blocks, tmp_path, "t<")
    assert "A &lt;b&gt; &amp; c" in html and "<code>x|y</code> &lt;here&gt;" in html and "&lt;3&gt;" in html
    assert "<title>t&lt;</title>" in html and "alt &quot;q&quot;" in html


X86_CPUINFO = """processor\t: 0
model name\t: Some EPYC
flags\t\t: fpu sse4_2 avx avx2 fma f16c
processor\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma f16c
"""
VNNI_CPUINFO = "model name\t: Some Xeon\nflags\t\t: sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimdhp asimddp i8mm\n"


def test_cpu_features_name_the_int8_dot_product_instructions():
    from edge.hostinfo import cpu_features, int8_dot_product

    x86 = cpu_features(X86_CPUINFO)
    assert x86 == ["sse4_2", "avx", "avx2", "fma", "f16c"] and int8_dot_product(x86) is None
    vnni = cpu_features(VNNI_CPUINFO)
    assert vnni[-3:] == ["avx512f", "avx512bw", "avx512_vnni"] and int8_dot_product(vnni) == "avx512_vnni"
    arm = cpu_features(ARM_CPUINFO)
    assert arm == ["asimd", "asimddp", "asimdhp", "i8mm"] and int8_dot_product(arm) == "i8mm"
    assert cpu_features("no flags here") == []


def test_environment_of_this_machine_lists_its_features():
    from tfq.reporting.environment import capture_environment

    env = capture_environment()
    assert isinstance(env["cpu_features"], list)
    assert env["int8_dot_product"] is None or env["int8_dot_product"] in env["cpu_features"]
