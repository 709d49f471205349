"""Distillation for QAT: the loss, the teacher-logit dataset, and fine_tune with a teacher (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")

from tfq.qat import QATConfig  # noqa: E402
from tfq.qat import distill  # noqa: E402

L = keras.layers
N = 4


def _logits(seed: int, n: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(n, N)).astype(np.float32)


def _labels(seed: int, n: int = 6) -> np.ndarray:
    return np.eye(N, dtype=np.float32)[np.random.default_rng(seed).integers(0, N, n)]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _loss_and_grad(loss, y_true, student):
    s = tf.Variable(student)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(y_true), s)
    return float(value), tape.gradient(value, s).numpy()


@pytest.mark.parametrize("temperature, weight", [(1.0, 0.5), (4.0, 0.9), (2.5, 1.0)])
def test_loss_is_label_ce_plus_t2_scaled_kl_with_the_matching_gradient(temperature, weight):
    y, s, t = _labels(0), _logits(1), _logits(2)
    loss = distill.DistillationLoss(N, temperature=temperature, weight=weight)
    value, grad = _loss_and_grad(loss, np.concatenate([y, t], -1), s)

    ce = -(y * np.log(_softmax(s))).sum(-1)
    pt, ps = _softmax(t / temperature), _softmax(s / temperature)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(-1)
    assert value == pytest.approx(float(np.mean((1 - weight) * ce + weight * temperature**2 * kl)), rel=1e-5)
    # d/ds of T^2 KL is T (softmax(s/T) - softmax(t/T)); of CE it is softmax(s) - y; Keras averages over the batch.
    expected = ((1 - weight) * (_softmax(s) - y) + weight * temperature * (ps - pt)) / len(s)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)

    plain, _ = _loss_and_grad(keras.losses.CategoricalCrossentropy(from_logits=True), y, s)
    assert value != pytest.approx(plain, rel=1e-3)


def test_teacher_term_vanishes_with_zero_gradient_when_student_matches_teacher():
    y, s = _labels(3), _logits(4)
    loss = distill.DistillationLoss(N, temperature=3.0, weight=1.0)
    value, grad = _loss_and_grad(loss, np.concatenate([y, s], -1), s)
    assert value == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_labels_only_give_the_plain_cross_entropy():
    y, s = _labels(5), _logits(6)
    value, _ = _loss_and_grad(distill.DistillationLoss(N, temperature=4.0, weight=0.7), y, s)
    plain, _ = _loss_and_grad(keras.losses.CategoricalCrossentropy(from_logits=True), y, s)
    assert value == pytest.approx(plain, rel=1e-6)


def test_invalid_temperature_or_weight_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        distill.DistillationLoss(N, temperature=0.0)
    with pytest.raises(ValueError, match="weight"):
        distill.DistillationLoss(N, weight=1.5)


def _tiny(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(i)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, L.Dense(N, name="logits")(x))


def _data(seed: int, n: int = 32):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, 8, 8, 1)).astype(np.float32)
    return x, np.eye(N, dtype=np.float32)[rng.integers(0, N, n)]


def test_with_teacher_logits_appends_the_teachers_inference_logits():
    teacher = _tiny(1)
    x, y = _data(0, 8)
    ds = distill.with_teacher_logits(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), teacher)
    xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in ds])
    packed = np.concatenate(ys)
    np.testing.assert_array_equal(np.concatenate(xs), x)
    np.testing.assert_array_equal(packed[:, :N], y)
    np.testing.assert_allclose(packed[:, N:], teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert teacher.trainable is False


def _fine_tune(tmp_path, name, labels, teacher, weight):
    from tfq.qat import quantize as qquantize
    from tfq.qat import train as qtrain
    from tfq.rundir import RunDir
    from tfq.train import OptimizerConfig

    student_fp32 = _tiny(0)
    qat_model = qquantize.quantize_model(student_fp32, QATConfig())
    x, _ = _data(0)
    train = tf.data.Dataset.from_tensor_slices((x, labels)).batch(16)
    run = RunDir.create(kind="qat", out=tmp_path / name)
    history = qtrain.fine_tune(
        qat_model, train.repeat(), train, run=run, optimizer_config=OptimizerConfig(lr=0.01, warmup_epochs=0.0),
        epochs=1, steps_per_epoch=2, num_classes=N, verbose=0, teacher=teacher,
        distill_temperature=2.0, distill_weight=weight,
    )
    return history.history


def test_fine_tune_with_a_pure_teacher_loss_ignores_the_labels_and_keeps_the_teacher(tmp_path):
    teacher = _tiny(7)
    before = [w.copy() for w in teacher.get_weights()]
    _, y = _data(0)
    shuffled = y[np.random.default_rng(9).permutation(len(y))]
    a = _fine_tune(tmp_path, "a", y, teacher, weight=1.0)
    b = _fine_tune(tmp_path, "b", shuffled, teacher, weight=1.0)
    plain = _fine_tune(tmp_path, "plain", y, None, weight=0.5)

    assert a["loss"][0] == pytest.approx(b["loss"][0], rel=1e-5)  # only the teacher term counts
    assert a["loss"][0] != pytest.approx(plain["loss"][0], rel=1e-3)
    assert set(a) >= {"top1", "top5", "val_top1", "val_loss"}
    # The validation set carries no teacher logits: val_loss is the plain label loss, as without distillation.
    assert a["val_loss"][0] != pytest.approx(a["loss"][0], rel=1e-3)
    for w0, w1 in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(w0, w1)
