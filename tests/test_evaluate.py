"""evaluate_tflite on tiny converted models, and the Markdown report helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq.report import (
    Column,
    fmt_bytes,
    fmt_db,
    fmt_delta_pp,
    fmt_list,
    fmt_ms,
    fmt_pct,
    fmt_ratio,
    get_path,
    markdown_table,
)


@pytest.fixture(scope="module")
def converted():
    import tensorflow as tf
    import tf_keras as keras

    from tfq.ptq import Mode, PTQConfig, quantize

    tf.random.set_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(6, name="logits")(x))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8, 8, 1)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    ranked = np.argsort(-ref, axis=1)
    y = ranked[:, 0].copy()
    y[:10] = ranked[:10, 1]  # the runner-up class: 75% top-1 and 100% top-5 for a faithful copy
    fp32 = quantize(model, PTQConfig(mode=Mode.FP32)).model_bytes
    int8 = quantize(model, PTQConfig(calib_samples=20), x).model_bytes
    dyn = quantize(model, PTQConfig(mode=Mode.DYNAMIC)).model_bytes
    return {"x": x, "y": y, "ref": ref, "fp32": fp32, "int8": int8, "dynamic": dyn}


def test_evaluate_fp32_matches_reference(converted):
    from tfq.evaluate import evaluate_tflite

    c = converted
    r = evaluate_tflite(c["fp32"], c["x"], c["y"], reference_logits=c["ref"], fp32_size_bytes=len(c["fp32"]),
                        latency_runs=50, warmup=2, threads=(1, 2))
    assert r["top1"] == pytest.approx(0.75)
    assert r["top5"] == 1.0
    assert r["agreement"] == 1.0 and r["sqnr_db"] > 80
    assert r["size_bytes"] == len(c["fp32"]) and r["size_ratio"] == 1.0
    assert set(r["latency_ms"]) == {"1", "2"}
    for stats in r["latency_ms"].values():
        assert stats["count"] == 50 and 0 < stats["p50"] <= stats["p90"]
    assert r["latency_setup"]["runs"] == 50 and r["latency_setup"]["warmup"] == 2
    assert r["float_ops"] and not r["integer_only"]


def test_evaluate_int8_is_integer_only(converted):
    from tfq.evaluate import evaluate_tflite

    c = converted
    r, logits = evaluate_tflite(c["int8"], c["x"], c["y"], reference_logits=c["ref"], fp32_size_bytes=len(c["fp32"]),
                                latency_runs=0, expect_integer=True, return_logits=True)
    assert r["float_ops"] == [] and r["integer_only"] and r["latency_ms"] == {}
    assert logits.shape == c["ref"].shape
    assert 10 < r["sqnr_db"] < 80 and r["agreement"] > 0.7


def test_evaluate_names_float_ops(converted):
    from tfq.evaluate import evaluate_tflite

    c = converted
    r = evaluate_tflite(c["dynamic"], c["x"], c["y"], latency_runs=0, expect_integer=True)
    assert r["agreement"] is None and r["sqnr_db"] is None and r["size_ratio"] is None
    assert any(name.startswith("CONV_2D(") for name in r["float_ops"]) and not r["integer_only"]


def test_latency_runs_has_a_floor(converted):
    from tfq.evaluate import evaluate_tflite

    c = converted
    r = evaluate_tflite(c["int8"], c["x"][:4], c["y"][:4], latency_runs=5, warmup=1, threads=(1,))
    assert r["latency_ms"]["1"]["count"] == 50


def test_evaluate_rejects_mismatched_labels(converted):
    from tfq.evaluate import evaluate_tflite

    with pytest.raises(ValueError, match="40 test images but 3 labels"):
        evaluate_tflite(converted["fp32"], converted["x"], converted["y"][:3], latency_runs=0)


# --------------------------------------------------------------------------- report


def test_formatters():
    assert fmt_pct(0.93414) == "93.41%"
    assert fmt_delta_pp(-0.0012) == "-0.12" and fmt_delta_pp(0.00001) == "+0.00"
    assert fmt_db(31.26) == "31.3" and fmt_db(math.inf) == "∞"
    assert fmt_bytes(1536) == "1.5 KiB" and fmt_bytes(900) == "900 B" and fmt_bytes(3 * 2**20) == "3.0 MiB"
    assert fmt_ratio(0.2543) == "0.25x"
    assert fmt_ms(0.1234) == "0.123" and fmt_ms(12.34) == "12.3" and fmt_ms(1234.5) == "1234"
    assert fmt_list([]) == "none" and fmt_list(list("abcdef"), limit=2) == "a, b (+4 more)"
    for f in (fmt_pct, fmt_db, fmt_bytes, fmt_ratio, fmt_ms, fmt_delta_pp, fmt_list):
        assert f(None) == "—" and f(float("nan")) == "—"


def test_get_path_nested_and_dotted_keys():
    row = {"latency_ms": {"1": {"p50": 2.0}}, "a.b": 5}
    assert get_path(row, "latency_ms.1.p50") == 2.0
    assert get_path(row, "a.b") == 5
    assert get_path(row, "latency_ms.4.p50") is None


def test_markdown_table_layout():
    rows = [{"name": "int8_kl", "top1": 0.9, "lat": {"1": 1.5}}, {"name": "fp32|x", "top1": None}]
    text = markdown_table(rows, [
        Column("name", "model", align="left"),
        Column("top1", "top-1", fmt_pct),
        ("lat.1", "ms", fmt_ms),
        Column(lambda r: len(r["name"]), "len"),
    ])
    lines = text.splitlines()
    assert lines[0].startswith("| model") and "top-1" in lines[0]
    assert lines[1].startswith("| :--") and lines[1].rstrip(" |").endswith(":")
    assert "90.00%" in lines[2] and "1.50" in lines[2]
    assert "fp32\\|x" in lines[3] and "—" in lines[3]
    assert len({len(line) for line in lines}) == 1  # padded so the plain text lines up


def test_markdown_table_rejects_bad_columns():
    with pytest.raises(ValueError, match="align"):
        Column("x", align="middle")
    with pytest.raises(ValueError, match="at least one column"):
        markdown_table([{}], [])
