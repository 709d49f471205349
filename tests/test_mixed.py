"""Mixed precision: plan parsing, what LiteRT runs, type verification, the search, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfq  # noqa: F401
from tfq.mixed import (
    PRECISIONS,
    PRESETS,
    Assignment,
    Budget,
    MixedBuilder,
    PlanError,
    Precision,
    PrecisionMismatchError,
    PrecisionPlan,
    PrecisionRule,
    SearchConfig,
    float_tflite,
    keras_layer_names,
    pareto_front,
    quantizable_layers,
    search_plan,
    tflite_logits,
    verify_precision,
)
from edge.tflite_model import summarize

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["stem_conv", "stage1_conv", "stage1_dw", "logits"]


def tiny_keras_model(seed: int = 0):
    """Conv-BN-ReLU, strided conv, depthwise conv, pool, dense: one op of each kind."""
    import tf_keras as keras

    init = keras.initializers.GlorotUniform(seed=seed)
    inp = keras.Input((8, 8, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", kernel_initializer=init, name="stem_conv")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", kernel_initializer=init, name="stage1_conv")(x)
    x = keras.layers.ReLU(name="stage1_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depthwise_initializer=init, name="stage1_dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(10, kernel_initializer=init, name="logits")(x)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="module")
def tiny():
    """(keras model, float .tflite, builder, x, labels from the float model)."""
    model = tiny_keras_model()
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype(np.float32)
    fp32 = float_tflite(model)
    builder = MixedBuilder(fp32, x[:16], layer_names=keras_layer_names(model))
    y = tflite_logits(fp32, x).argmax(axis=1)
    return model, fp32, builder, x, y


# --------------------------------------------------------------------------- plan format


def test_plan_round_trips_through_yaml_and_json(tmp_path):
    plan = PrecisionPlan(
        default=Precision.INT8,
        rules=(PrecisionRule("^stem", Precision.FP16), PrecisionRule("@last", Precision.FP32)),
        name="mine",
        description="d",
    )
    for suffix in (".yaml", ".json"):
        path = plan.save(tmp_path / f"plan{suffix}")
        assert PrecisionPlan.load(path) == plan
    assert PrecisionPlan.from_dict(json.loads(plan.to_json())) == plan


def test_presets_match_config_files():
    files = sorted((REPO / "configs" / "mixed").glob("*.yaml"))
    assert {f.stem for f in files} == set(PRESETS)
    for f in files:
        assert PrecisionPlan.load(f) == PRESETS[f.stem]
    assert PrecisionPlan.load("first_last_fp16") == PRESETS["first_last_fp16"]


def test_first_matching_rule_wins_and_selectors():
    plan = PrecisionPlan.from_rule_strings(["stage1=fp16", "stage1_dw=fp32", "@first=int4_weights"])
    got = plan.resolve(LAYERS)
    assert got == {
        "stem_conv": Precision.INT4_WEIGHTS,
        "stage1_conv": Precision.FP16,
        "stage1_dw": Precision.FP16,  # the earlier rule wins
        "logits": Precision.INT8,
    }
    assert PRESETS["first_last_fp16"].resolve(LAYERS) == {
        "stem_conv": Precision.FP16, "stage1_conv": Precision.INT8, "stage1_dw": Precision.INT8,
        "logits": Precision.FP16,
    }


def test_rule_matching_nothing_is_an_error_listing_the_layers():
    plan = PrecisionPlan.from_rule_strings(["stage9.*=fp16"])
    with pytest.raises(PlanError, match=r"stage9.*match no quantizable layer.*stem_conv, stage1_conv"):
        plan.resolve(LAYERS)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"default": "int3"}, r"default: got 'int3'; valid choices are 'int8', 'int4_weights'"),
        ({"rules": [{"pattern": "(", "precision": "fp16"}]}, r"not a valid regex"),
        ({"rules": [{"pattern": "@middle", "precision": "fp16"}]}, r"unknown selector '@middle'"),
        ({"rules": [{"pattern": "x", "precision": "fp16", "extra": 1}]}, r"unknown key .*extra"),
        ({"defaults": "int8"}, r"unknown key defaults"),
        ({"name": "a b"}, r"file-name-safe"),
    ],
)
def test_bad_plans_fail_with_a_clear_message(data, message):
    from tfq.configs import ConfigError

    with pytest.raises(ConfigError, match=message):
        PrecisionPlan.from_dict(data)
    with pytest.raises(PlanError, match="unknown precision 'int3'; valid precisions are int8, int4_weights"):
        PrecisionPlan.from_rule_strings(["x=int3"])


def test_rule_strings_need_an_equals_sign():
    with pytest.raises(PlanError, match="REGEX=PRECISION"):
        PrecisionPlan.from_rule_strings(["stem_conv"])
    assert PrecisionPlan.from_rule_strings(["a=b=fp16"]).rules[0].pattern == "a=b"


def test_unknown_preset_lists_presets():
    with pytest.raises(PlanError, match="presets are: all_fp16, all_int4_weights, all_int8"):
        PrecisionPlan.preset("nope")


# --------------------------------------------------------------------------- building and verification


def test_layers_are_named_after_keras_layers(tiny):
    _, fp32, builder, _, _ = tiny
    assert builder.layer_names == LAYERS
    assert [layer.op_type for layer in builder.layers] == ["CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D",
                                                           "FULLY_CONNECTED"]
    # Without the Keras names the weight tensor names give the same answer.
    assert [layer.name for layer in quantizable_layers(fp32)] == LAYERS


def _weight_and_activation_types(model: bytes) -> dict[str, tuple[str, str]]:
    """Independent read-back: weight storage dtype and activation dtype per weighted op."""
    s = summarize(model)
    producers = {o: op for op in s.ops for o in op.outputs}
    out = {}
    for op in s.ops:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        w = s.tensor(op.inputs[1])
        if not w.is_constant:
            w = s.tensor(producers[op.inputs[1]].inputs[0])
        out[op.name + ":" + s.tensor(op.outputs[0]).name] = (w.dtype, s.tensor(op.inputs[0]).dtype)
    return out


@pytest.mark.parametrize("precision", list(Precision))
def test_each_precision_is_built_runs_and_reads_back(tiny, precision):
    _, fp32, builder, x, _ = tiny
    plan = PrecisionPlan(default=Precision.INT8, rules=(PrecisionRule("stage1_conv|logits", precision),))
    mixed = builder.build(plan)
    types = _weight_and_activation_types(mixed.model)
    spec = PRECISIONS[precision]
    picked = {k: v for k, v in types.items() if "stage1_conv" in k or k.startswith("FULLY_CONNECTED")}
    assert len(picked) == 2
    assert set(picked.values()) == {(spec.weight_dtype, spec.activation_dtype)}
    others = {k: v for k, v in types.items() if k not in picked}
    assert set(others.values()) == {("INT8", "INT8")}
    records = {r["layer"]: r for r in mixed.layers}
    assert records["stage1_conv"]["precision"] == precision.value
    # LiteRT runs it, with XNNPACK and with the reference kernels, close to FP32.
    ref = tflite_logits(fp32, x)
    from edge.litert import TFLiteModel, make_interpreter

    for xnnpack in (True, False):
        out = TFLiteModel(make_interpreter(mixed.model, use_xnnpack=xnnpack)).predict(x)
        rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        assert rel < 0.25, (precision, xnnpack, rel)


def test_int4_on_depthwise_falls_back_to_int8_and_says_so(tiny):
    _, _, builder, _, _ = tiny
    mixed = builder.build(PrecisionPlan.preset("all_int4_weights"))
    assert mixed.assignment.effective["stage1_dw"] == Precision.INT8
    assert "DEPTHWISE_CONV_2D" in mixed.assignment.fallbacks["stage1_dw"]
    assert mixed.assignment.effective["stage1_conv"] == Precision.INT4_WEIGHTS
    bits4 = mixed.stats()["bits_per_weight"]
    int8 = builder.build(PrecisionPlan.preset("all_int8"))
    assert int8.stats()["bits_per_weight"] == pytest.approx(8.0)
    assert bits4 < 6.0
    assert mixed.size_bytes < int8.size_bytes


def test_verification_catches_a_mismatch(tiny):
    _, _, builder, _, _ = tiny
    int8 = builder.build(PrecisionPlan.preset("all_int8"))
    claimed = dict(int8.assignment.effective)
    claimed["stage1_conv"] = Precision.FP16
    claimed["logits"] = Precision.INT4_WEIGHTS
    wrong = Assignment(claimed, claimed, {}, Precision.INT8)
    with pytest.raises(PrecisionMismatchError) as err:
        verify_precision(int8.model, builder.layers, wrong)
    text = str(err.value)
    assert "stage1_conv (CONV_2D): plan says fp16" in text and "activations INT8" in text
    assert "logits (FULLY_CONNECTED): plan says int4_weights" in text
    assert "stem_conv" not in text
    # A layer missing from the model is caught too.
    with pytest.raises(PrecisionMismatchError, match="no CONV_2D op with output"):
        verify_precision(int8.model, [builder.layers[0].__class__(**{**builder.layers[0].__dict__,
                                                                      "output_tensor": "nope"})],
                         int8.assignment)


def test_ops_without_weights_are_read_back_and_must_not_mix_types(tiny):
    from ai_edge_litert import schema_py_generated as schema

    from edge.tflite_model import read_model, write_model

    _, _, builder, _, _ = tiny
    int8 = builder.build(PrecisionPlan.preset("all_int8"))
    glue = [r for r in int8.layers if r.get("glue")]
    assert glue and {r["op"] for r in glue} >= {"MEAN"}
    assert all(r["activation_dtype"] == "INT8" and r["precision"] is None for r in glue)
    fl = builder.build(PrecisionPlan.preset("int8_weights_fp16_activations"))
    assert {r["activation_dtype"] for r in fl.layers if r.get("glue")} == {"FLOAT32"}
    # A model whose MEAN reads int8 and writes float without a DEQUANTIZE is rejected.
    model = read_model(int8.model)
    sub = model.subgraphs[0]
    mean = next(op for op in sub.operators if model.operatorCodes[op.opcodeIndex].builtinCode
                == schema.BuiltinOperator.MEAN)
    sub.tensors[mean.outputs[0]].type = schema.TensorType.FLOAT32
    with pytest.raises(PrecisionMismatchError, match=r"\(MEAN, output .* mixes FLOAT32 and INT8 without"):
        verify_precision(write_model(model), builder.layers, int8.assignment)


def test_float_classifier_gives_float_output(tiny):
    _, _, builder, _, _ = tiny
    from edge.litert import make_interpreter

    fl = builder.build(PrecisionPlan.preset("first_last_fp16"))
    interp = make_interpreter(fl.model)
    detail = interp.get_output_details()[0]
    assert detail["dtype"] == np.float32
    # The signature follows the rewired output.
    runner = interp.get_signature_runner()
    (out,) = runner(input=np.zeros((1, 8, 8, 3), np.float32)).values()
    assert out.dtype == np.float32 and out.shape == (1, 10)
    assert summarize(fl.model).op_counts().get("QUANTIZE", 0) >= 1  # the stem output re-enters int8


def test_saved_artifacts_come_in_threes(tiny, tmp_path):
    _, _, builder, _, _ = tiny
    mixed = builder.build(PrecisionPlan.preset("first_last_fp16"))
    path = mixed.save(tmp_path)
    assert path.name == "first_last_fp16.tflite"
    assert json.loads((tmp_path / "first_last_fp16_recipe.json").read_text())[0]["regex"] == ".*"
    assert PrecisionPlan.load(tmp_path / "first_last_fp16_plan.yaml") == PRESETS["first_last_fp16"]
    with pytest.raises(FileExistsError, match="overwrite"):
        mixed.save(tmp_path)


# --------------------------------------------------------------------------- search


def test_pareto_front():
    points = [(1.0, 0.5), (2.0, 0.9), (1.5, 0.4), (3.0, 0.9), (0.5, 0.1)]
    assert pareto_front(points) == [4, 0, 1]


def _evaluator(x, y, ref):
    from tfq.mixed import PlanEvaluator

    return PlanEvaluator(x, y, ref, latency_runs=3, warmup_runs=1)


def test_search_meets_a_generous_budget_and_compresses(tiny):
    _, fp32, builder, x, y = tiny
    ev = _evaluator(x, y, tflite_logits(fp32, x))
    result = search_plan(builder, ev, Budget(max_drop=100.0), int8_ranking=LAYERS)
    assert result.met and result.best.met
    assert result.reference.step == "all int8"
    assert result.best.metrics["size_mb"] < result.reference.metrics["size_mb"]
    assert Precision.INT4_WEIGHTS in result.best.assignment.effective.values()


def test_search_promotes_sensitive_layers_for_a_tight_budget(tiny):
    _, fp32, builder, x, y = tiny
    ev = _evaluator(x, y, tflite_logits(fp32, x))
    result = search_plan(builder, ev, Budget(max_drop=0.0), int8_ranking=["logits", "stem_conv", "stage1_dw",
                                                                          "stage1_conv"],
                         config=SearchConfig(allow_int4=False))
    steps = [c.step for c in result.candidates]
    assert steps[0] == "all int8"
    if not result.reference.met:
        assert steps[1] == "promote logits -> fp16"
    assert result.met
    assert result.best.metrics["drop"] <= 0.0


def test_search_reports_the_gap_of_an_impossible_budget(tiny):
    _, fp32, builder, x, y = tiny
    ev = _evaluator(x, y, tflite_logits(fp32, x))
    seen = []
    result = search_plan(builder, ev, Budget(max_size_mb=1e-6), int8_ranking=LAYERS, on_candidate=seen.append)
    assert not result.met
    assert result.gaps["max_size_mb"] > 0
    assert len(seen) == len(result.candidates) >= 2
    # The best unmet plan is the one closest to the size limit: the smallest one.
    assert result.best.metrics["size_mb"] == min(c.metrics["size_mb"] for c in result.candidates)


def test_budget_validation():
    with pytest.raises(Exception, match="at least one budget"):
        Budget()
    with pytest.raises(Exception, match="positive"):
        Budget(max_size_mb=0)
    b = Budget(max_drop=0.5, max_size_mb=2.0)
    assert b.gaps({"drop": 0.7, "size_mb": 1.0}) == {"max_drop": pytest.approx(0.2), "max_size_mb": 0.0}


# --------------------------------------------------------------------------- CLI


def _mixed_cli(argv):
    from pipelines.mixed import main, parse_args

    return main(parse_args(argv))


def test_cli_search_and_impossible_budget(tiny_baseline, tmp_path):
    common = ["--baseline", str(tiny_baseline), "--val-samples", "64", "--test-samples", "64",
              "--latency-runs", "3", "--root", str(tmp_path)]
    out = tmp_path / "search"
    assert _mixed_cli([*common, "--max-drop", "50", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["met"] and results["mode"] == "search"
    for name in ("mixed.tflite", "mixed_recipe.json", "mixed_plan.yaml", "plans.jsonl", "pareto.png",
                 "sensitivity.json"):
        assert (out / name).is_file(), name
    assert results["chosen"]["size_bytes"] <= results["all_int8"]["size_bytes"]
    bad = tmp_path / "impossible"
    assert _mixed_cli([*common, "--max-size-mb", "0.000001", "--out", str(bad)]) == 3
    results = json.loads((bad / "results.json").read_text())
    assert not results["met"] and results["gaps"]["max_size_mb"] > 0
    assert (bad / "mixed.tflite").is_file()
    assert json.loads((bad / "run.json").read_text())["status"] == "budget_not_met"


def test_cli_bad_input(tiny_baseline, tmp_path, capsys):
    assert _mixed_cli(["--model", "nosuchmodel", "--max-drop", "1", "--root", str(tmp_path)]) == 2
    assert "python -m pipelines.train --model nosuchmodel" in capsys.readouterr().err
    assert _mixed_cli(["--baseline", str(tiny_baseline), "--root", str(tmp_path)]) == 2
    assert "give a budget" in capsys.readouterr().err
    assert _mixed_cli(["--baseline", str(tiny_baseline), "--rule", "nomatch=fp16", "--out",
                       str(tmp_path / "r")]) == 2
    assert "match no quantizable layer" in capsys.readouterr().err


def test_cli_builds_one_plan_in_a_subprocess(tiny_baseline, tmp_path):
    out = tmp_path / "plan"
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.mixed", "--baseline", str(tiny_baseline), "--plan", "first_last_fp16",
         "--val-samples", "64", "--test-samples", "64", "--latency-runs", "3", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "plan" and results["met"]
    precisions = {r["layer"]: r["precision"] for r in results["verification"] if not r.get("glue")}
    assert any(r.get("glue") for r in results["verification"])  # ops without weights are read back too
    first, *_, last = precisions
    assert precisions[first] == precisions[last] == "fp16"
    assert (out / "first_last_fp16.tflite").is_file()


def test_drop_standard_error_and_budget_margin():
    from tfq.mixed import paired_drop_se

    y = np.zeros(100, int)
    ref = np.tile([1.0, 0.0], (100, 1))  # always right
    same = ref.copy()
    assert paired_drop_se(ref, same, y) == 0.0
    worse = ref.copy()
    worse[:10] = [0.0, 1.0]  # 10 of 100 wrong
    se = paired_drop_se(ref, worse, y)
    assert se == pytest.approx(100 * np.std([1] * 10 + [0] * 90, ddof=1) / 10)
    metrics = {"drop": 0.4, "drop_se": 0.3, "size_mb": 1.0}
    assert Budget(max_drop=0.5, drop_z=0).met(metrics)
    assert not Budget(max_drop=0.5).met(metrics)  # 0.4 + 1.0 * 0.3 > 0.5
    assert Budget(max_drop=0.5).gaps(metrics)["max_drop"] == pytest.approx(0.2)


def test_latency_objective_rechecks_the_finalists(tiny):
    from tfq.mixed import Objective

    _, fp32, builder, x, y = tiny
    ev = _evaluator(x, y, tflite_logits(fp32, x))
    result = search_plan(builder, ev, Budget(max_drop=100.0, drop_z=0), int8_ranking=LAYERS,
                         config=SearchConfig(objective=Objective.LATENCY, latency_recheck_rounds=2, recheck_window=100.0),
                         extra_plans=[PRESETS["first_last_fp16"]])
    assert result.met
    rechecked = [c for c in result.candidates if "latency_ms_search" in c.metrics]
    assert len(rechecked) >= 2
    feasible = [c for c in result.candidates if c.met]
    assert result.best.metrics["latency_ms"] == min(c.metrics["latency_ms"] for c in feasible)
