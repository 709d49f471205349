"""The QAT stage: baseline -> fake quant -> fine-tuning -> ``.tflite`` -> table.

:func:`resolve` fills the config's "use the baseline's" fields (learning rate =
baseline / 100, batch size, weight decay); :func:`run_qat` does the work into
a run directory::

    runs/<model>-<dataset>-qat-<time>/
      run.json                 kind "qat", model, dataset, baseline, status
      config.json              the resolved QATConfig (loadable with --config)
      plan.json                what happened to each layer (quantized / float)
      reference.json           FP32 and PTQ references, range initialization
      metrics.jsonl            one line per epoch
      accuracy_per_epoch.csv   FP32, PTQ and QAT validation top-1 per epoch
      qat_curves.png           the same, plotted
      model_qat.h5             the best fake-quant Keras model on validation
      model_int8.tflite        its conversion (INT8; FP16 weights for float layers)
      model_int8_config.json   the config beside it
      ptq_int8_<method>.tflite the PTQ reference, when no PTQ run existed
      results.json / results.md  the table (PTQ's columns) and the checks
      backup/                  the last finished epoch, for resume

Model selection uses the validation split; the test split only feeds the
final table.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfq.qat.config import Granularity, QATConfig
from tfq.rundir import RunDir, find_runs

__all__ = ["find_ptq_run", "resolve", "run_qat"]

log = logging.getLogger(__name__)

MODEL_TFLITE = "model_int8.tflite"
CSV_FILE = "accuracy_per_epoch.csv"
PLOT_FILE = "qat_curves.png"


def resolve(config: QATConfig, baseline: Any) -> QATConfig:
    """Fills ``lr``, ``batch_size`` and ``weight_decay`` from the baseline."""
    opt = baseline.config.optimizer
    return config.replace(
        lr=config.lr if config.lr is not None else opt.lr / 100.0,
        batch_size=config.batch_size or baseline.config.batch_size,
        weight_decay=config.weight_decay if config.weight_decay is not None else opt.weight_decay,
    )


def find_ptq_run(baseline: Any, root: str | os.PathLike, explicit: str | None = None) -> RunDir | None:
    """The PTQ run of this baseline (explicit, or the newest complete one under ``root``)."""
    if explicit:
        run = RunDir.open(explicit)
        if run.manifest().get("kind") != "ptq":
            raise ValueError(f"ptq_run {explicit} is a {run.manifest().get('kind')!r} run, not a PTQ run")
        return run
    mine = Path(baseline.run.path).resolve()
    for run in find_runs(root, kind="ptq"):
        base = run.manifest().get("baseline")
        if base and Path(base).resolve() == mine:
            return run
    return None


def _best_ptq_row(ptq_run: RunDir) -> dict[str, Any] | None:
    if not ptq_run.exists("results.json"):
        return None
    rows = [r for r in ptq_run.read_json("results.json").get("rows", []) if r.get("mode") == "int8"]
    rows = [r for r in rows if ptq_run.exists(r.get("file", ""))]
    return max(rows, key=lambda r: r.get("top1", -1.0)) if rows else None


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    from edge.metrics import top_k_accuracy

    return float(top_k_accuracy(logits, labels, 1))


def _one_hot_ds(ds: Any, depth: int) -> Any:
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, depth)))


def run_qat(
    config: QATConfig,
    baseline: Any,
    run: RunDir,
    *,
    root: str | os.PathLike = "runs",
    test_samples: int | None = None,
    latency_runs: int = 50,
    threads: tuple[int, ...] | None = None,
    verbose: int = 2,
) -> dict[str, Any]:
    """Runs QAT of ``baseline`` into ``run`` (resuming from ``run/backup``).

    Args:
      config: The resolved config (:func:`resolve`).
      baseline: A :class:`tfq.baseline.Baseline`.
      run: The run directory (kind ``qat``).
      root: Where PTQ runs are searched.
      test_samples: Evaluate on the first N test images only.
      latency_runs: Timed runs per thread count (0 skips latency).
      threads: Thread counts for latency.
      verbose: Keras verbosity while fine-tuning.

    Returns:
      The content of ``results.json``.

    Raises:
      tfq.qat.convert.ConversionError: The ``.tflite`` does not have the
        expected precision layout, or disagrees with the Keras model.
    """
    from tfq.evaluate import evaluate_tflite
    from tfq.qat import convert as qconvert
    from tfq.qat import quantize as qquantize
    from tfq.qat import report as qreport
    from tfq.qat import train as qtrain
    from tfq.train import seed_everything

    t_start = time.perf_counter()
    seed_everything(config.seed, deterministic=True)
    ds = baseline.dataset
    fp32 = baseline.load_model()
    model_name, dataset_name = baseline.config.model.name, baseline.config.data.name
    x_val, y_val = ds.arrays("val")
    x_test, y_test = ds.arrays("test")
    if test_samples:
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    input_shape = tuple(int(d) if d is not None else -1 for d in fp32.input_shape[1:])

    plan = qquantize.plan_model(fp32, config)
    run.write_json("plan.json", plan.to_dict())
    run.write_json("config.json", config.to_dict())
    qat_model = qquantize.quantize_model(fp32, config)
    resuming = run.exists("backup") and run.exists("reference.json")

    if resuming:
        reference = run.read_json("reference.json")
        log.info("resuming: references and range initialization from reference.json")
    else:
        reference = _references(config, baseline, fp32, qat_model, run, root, x_val, y_val, input_shape)
        run.write_json("reference.json", reference)

    # Fine-tuning ------------------------------------------------------------------
    depth = ds.num_classes
    x_train = ds.x("train")
    steps = config.steps_per_epoch or max(1, math.ceil(len(x_train) / config.batch_size))
    train_ds = _one_hot_ds(
        ds.tf_dataset("train", batch_size=config.batch_size, training=True, seed=config.seed), depth
    ).repeat()
    val_ds = _one_hot_ds(ds.tf_dataset("val", batch_size=256, training=False), depth)
    opt = baseline.config.optimizer.replace(
        lr=config.lr, warmup_epochs=config.warmup_epochs, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    log.info("fine-tuning %d epochs x %d steps, batch %d, peak lr %.3g (baseline %.3g)",
             config.epochs, steps, config.batch_size, config.lr, baseline.config.optimizer.lr)
    fp32_val, ptq_val = reference["fp32"]["val_top1"], reference["ptq"]["val_top1"]
    t_fit = time.perf_counter()
    qtrain.fine_tune(
        qat_model, train_ds, val_ds, run=run, optimizer_config=opt, epochs=config.epochs,
        steps_per_epoch=steps, freeze_bn_after=config.freeze_bn_after,
        freeze_ranges_after=config.freeze_ranges_after, num_classes=depth, verbose=verbose,
        extra=lambda epoch: {"fp32_val_top1": fp32_val, "ptq_val_top1": ptq_val},
        # A fresh copy: the teacher must not share variables with the model being fine-tuned.
        teacher=baseline.load_model() if config.distill.enabled else None,
        distill_temperature=config.distill.temperature, distill_weight=config.distill.weight,
    )
    fit_seconds = time.perf_counter() - t_fit

    rows = qreport.epoch_rows(run.read_jsonl("metrics.jsonl"), fp32_val_top1=fp32_val, ptq_val_top1=ptq_val,
                              initial_val_top1=reference.get("qat_initial_val_top1"))
    run.write_text(CSV_FILE, qreport.write_epoch_csv(rows))
    qreport.plot_curves(rows, run.file(PLOT_FILE),
                        title=f"QAT of {model_name} on {dataset_name}",
                        ptq_label=f"PTQ INT8 ({reference['ptq']['name']})")

    # Conversion --------------------------------------------------------------------
    best = qquantize.load_qat_model(str(run.file(qtrain.BEST_FILE)))
    float_layers = plan.float_layers
    weighted = [p.name for p in plan.layers if p.name in float_layers and p.type in ("Conv2D", "DepthwiseConv2D",
                                                                                      "Dense")]
    tflite_bytes, conversion = qconvert.convert_to_tflite(
        best, float_layers=float_layers, weighted_float_layers=weighted
    )
    agreement = qconvert.check_agreement(best, tflite_bytes, x_test[: config.agreement_samples],
                                         min_agreement=config.min_agreement, max_steps=config.max_logit_steps)
    run.write_bytes(MODEL_TFLITE, tflite_bytes)
    run.write_json("model_int8_config.json", config.to_dict())
    if not agreement.passed:
        raise qconvert.ConversionError(
            f"Keras fake-quant model and .tflite disagree on {agreement.samples} test images: top-1 agreement "
            f"{agreement.top1_agreement:.4f} (need {config.min_agreement}), max |logit diff| "
            f"{agreement.max_abs_diff:.4g} (tolerance {agreement.tolerance:.4g})"
        )

    # Evaluation table ----------------------------------------------------------------
    fp32_logits = fp32.predict(x_test, batch_size=256, verbose=0)
    keras_fp32_top1 = _top1(fp32_logits, y_test)
    from tfq.ptq import convert_fp32

    fp32_bytes = convert_fp32(fp32)
    eval_kw = dict(reference_logits=fp32_logits, fp32_size_bytes=len(fp32_bytes), latency_runs=latency_runs,
                   threads=threads)
    table = []
    fp32_row = {"name": "fp32", "mode": "fp32", "method": None, "granularity": None, "io": "float32",
                "file": None, **evaluate_tflite(fp32_bytes, x_test, y_test, **eval_kw)}
    table.append(fp32_row)
    ptq_path = Path(reference["ptq"]["path"])
    ptq_row = {"name": f"ptq_{reference['ptq']['name']}", "mode": "int8", "method": reference["ptq"]["method"],
               "granularity": reference["ptq"]["granularity"], "io": "float32", "file": str(ptq_path),
               "source": reference["ptq"]["source"],
               **evaluate_tflite(ptq_path.read_bytes(), x_test, y_test, expect_integer=True, **eval_kw)}
    table.append(ptq_row)
    mixed = bool(float_layers)
    qat_row = {
        "name": "qat_int8_fp16" if mixed else "qat_int8",
        "mode": "int8+fp16" if mixed else "int8",
        "method": f"qat ({config.calibration_method.value} init)" if config.init_from_ptq else "qat (cold)",
        "granularity": config.weights.granularity.value,
        "io": "float32",
        "file": MODEL_TFLITE,
        **evaluate_tflite(tflite_bytes, x_test, y_test, expect_integer=not mixed, **eval_kw),
    }
    table.append(qat_row)
    for r in table:
        r["delta_top1"] = r["top1"] - keras_fp32_top1

    best_epoch = run.read_json("best.json")
    checks = {
        "qat_minus_fp32_pp": 100 * (qat_row["top1"] - keras_fp32_top1),
        "qat_minus_ptq_pp": 100 * (qat_row["top1"] - ptq_row["top1"]),
        "within_0.2pp_of_fp32": qat_row["top1"] >= keras_fp32_top1 - 0.002,
        "at_least_ptq": qat_row["top1"] >= ptq_row["top1"],
        "agreement_passed": agreement.passed,
    }
    header = (
        f"# QAT: {model_name} on {dataset_name}\n\n"
        f"Baseline: `{baseline.run.path}`; Keras FP32 test top-1 {100 * keras_fp32_top1:.2f}% on "
        f"{len(y_test)} test images. QAT: {config.epochs} epochs (best on validation: epoch "
        f"{best_epoch['epoch']}), peak lr {config.lr:.3g}, weights {config.weights.granularity.value}, "
        f"activations {'symmetric' if config.activations.symmetric else 'asymmetric'}"
        f"{', float layers ' + ', '.join(float_layers) if float_layers else ''}; ranges initialized from "
        f"{reference['range_init']['source'] if reference.get('range_init') else 'TFMOT defaults (cold)'}. "
        f"Keras vs .tflite: top-1 agreement {100 * agreement.top1_agreement:.2f}% on {agreement.samples} test "
        f"images, max |logit diff| {agreement.max_abs_diff:.3g}.\n\n"
    )
    md = header + qreport.markdown(table)
    run.write_text("results.md", md)
    results = {
        "model": model_name,
        "dataset": dataset_name,
        "baseline": str(baseline.run.path),
        "keras_fp32": {"top1": keras_fp32_top1},
        "test_samples": int(len(y_test)),
        "config": config.to_dict(),
        "rows": table,
        "checks": checks,
        "agreement": agreement.to_dict(),
        "conversion": conversion.to_dict(),
        "float_layers": float_layers,
        "best_epoch": best_epoch,
        "reference": reference,
        "fit_seconds_this_session": round(fit_seconds, 2),
        "seconds_this_session": round(time.perf_counter() - t_start, 2),
    }
    run.write_json("results.json", results)
    run.mark_complete(test_top1=qat_row["top1"])
    results["markdown"] = md
    return results


def _references(
    config: QATConfig,
    baseline: Any,
    fp32: Any,
    qat_model: Any,
    run: RunDir,
    root: str | os.PathLike,
    x_val: np.ndarray,
    y_val: np.ndarray,
    input_shape: tuple[int, ...],
) -> dict[str, Any]:
    """FP32 and PTQ references on validation, and the range initialization."""
    from tfq.calibration import CalibrationConfig, representative_samples
    from tfq.evaluate import predict_tflite
    from tfq.qat import ranges as qranges

    ds = baseline.dataset
    reference: dict[str, Any] = {}
    reference["fp32"] = {"val_top1": _top1(fp32.predict(x_val, batch_size=256, verbose=0), y_val)}
    method = config.calibration_method.value
    ptq_run = find_ptq_run(baseline, root, config.ptq_run)
    samples = state = None

    def calib_samples() -> np.ndarray:
        nonlocal samples
        if samples is None:
            x_calib, _ = ds.arrays("calib")
            samples = representative_samples(x_calib, config.calibration_samples, seed=config.seed,
                                             input_shape=input_shape)
        return samples

    # Range initialization ------------------------------------------------------
    if config.init_from_ptq:
        ranges_file = qranges.find_ptq_ranges(ptq_run.path, method) if ptq_run else None
        result = qranges.init_ranges(
            qat_model, fp32, method=method, symmetric=config.activations.symmetric,
            ptq_ranges_file=ranges_file, samples=None if ranges_file else calib_samples(),
        )
        state = result["state"]
        reference["range_init"] = result["record"]
    else:
        reference["range_init"] = None
        log.info("init_from_ptq is off: activation ranges start at TFMOT's defaults")
    reference["qat_initial_val_top1"] = _top1(qat_model.predict(x_val, batch_size=256, verbose=0), y_val)

    # PTQ reference: the best INT8 model of a PTQ run, or one converted here -------
    best_row = _best_ptq_row(ptq_run) if ptq_run else None
    if best_row is not None:
        path = ptq_run.file(best_row["file"])
        reference["ptq"] = {
            "source": "ptq_run", "run": str(ptq_run.path), "name": best_row.get("name", path.stem),
            "method": best_row.get("method"), "granularity": best_row.get("granularity"), "path": str(path),
        }
    else:
        from tfq.ptq import Granularity as PTQGranularity
        from tfq.ptq import PTQConfig, prepare_calibration, quantize

        if state is None:
            state = prepare_calibration(fp32, calib_samples())
        granularity = (PTQGranularity.PER_CHANNEL if config.weights.granularity is Granularity.PER_CHANNEL
                       else PTQGranularity.PER_TENSOR)
        ptq_cfg = PTQConfig(
            granularity=granularity,
            calibration=CalibrationConfig(method=method, symmetric=config.activations.symmetric),
            calib_samples=config.calibration_samples, seed=config.seed,
        )
        result = quantize(fp32, ptq_cfg, state=state)
        name = f"ptq_{result.name}.tflite"
        run.write_bytes(name, result.model_bytes)
        run.write_json(f"ptq_{result.name}_config.json", ptq_cfg.to_dict())
        reference["ptq"] = {
            "source": "converted_here", "run": None, "name": result.name, "method": method,
            "granularity": granularity.value, "path": str(run.file(name)),
        }
        log.info("no PTQ run of this baseline under %s: converted %s as the PTQ reference", root, name)
    reference["ptq"]["val_top1"] = _top1(predict_tflite(reference["ptq"]["path"], x_val), y_val)
    log.info("references on validation: FP32 %.4f, PTQ %s %.4f, QAT after range init %.4f",
             reference["fp32"]["val_top1"], reference["ptq"]["name"], reference["ptq"]["val_top1"],
             reference["qat_initial_val_top1"])
    return reference
