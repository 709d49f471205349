"""Regenerates the tiny ``.tflite`` fixtures used by ``tests/edge``.

Each fixture is our own Conv-ReLU-Pool-Dense classifier on 8x8x1 inputs with
seeded weights, converted with TensorFlow Lite in one precision. Run::

    .venv/bin/python tests/data/make_fixtures.py            # writes tests/data/*.tflite
    .venv/bin/python tests/data/make_fixtures.py --out DIR

Fixtures (all under 100 KB):

* ``float32.tflite``       FP32, batch dimension dynamic (signature -1).
* ``dynamic.tflite``       dynamic-range: int8 Dense weights, float activations.
* ``fp16.tflite``          FP16 weights expanded by DEQUANTIZE ops.
* ``int8.tflite``          full-integer int8, float32 input/output.
* ``int8_uint8io.tflite``  full-integer int8, uint8 input/output.
* ``int8_fixed_batch.tflite`` full-integer int8, int8 I/O, batch fixed at 1.
* ``int16x8.tflite``       16-bit activations / 8-bit weights, float32 I/O.
* ``int16x8_int16io.tflite`` 16x8 with int16 input/output.
* ``dynamic_hw.tflite``    FP32 with unknown height and width (global pooling).
* ``eval.npz``             64 uint8 images (``images``, NHWC) and ``labels``.
"""

from __future__ import annotations

import argparse
import os
import sys

import tfq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import tensorflow as tf
import tf_keras as keras

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_CLASSES = 10
SEED = 1234


def build(input_shape=(8, 8, 1), batch_size=None, global_pool=False) -> keras.Model:
    """Conv-ReLU-Pool-Dense with deterministic layer names and seeded weights."""
    inputs = keras.Input(shape=input_shape, batch_size=batch_size, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.ReLU(name="relu1")(x)
    if global_pool:
        x = keras.layers.GlobalAveragePooling2D(name="pool1")(x)
    else:
        x = keras.layers.MaxPooling2D(2, name="pool1")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(NUM_CLASSES if global_pool else 160, name="fc1")(x)
    if not global_pool:
        x = keras.layers.ReLU(name="relu2")(x)
        x = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    model = keras.Model(inputs, x, name="tiny")
    rng = np.random.default_rng(SEED)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def calibration_images(n: int = 32) -> np.ndarray:
    rng = np.random.default_rng(SEED + 1)
    return rng.uniform(0, 1, (n, 8, 8, 1)).astype(np.float32)


def convert(model: keras.Model, mode: str) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)

    def representative():
        for img in calibration_images():
            yield [img[None]]

    if mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode.startswith("int8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"int8": None, "int8_uint8io": tf.uint8, "int8_int8io": tf.int8}[mode]
        if io_type is not None:
            conv.inference_input_type = io_type
            conv.inference_output_type = io_type
    elif mode.startswith("int16x8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if mode == "int16x8_int16io":
            conv.inference_input_type = tf.int16
            conv.inference_output_type = tf.int16
    elif mode != "float32":
        raise ValueError(f"unknown mode {mode!r}")
    return conv.convert()


FIXTURES = {
    "float32": (dict(), "float32"),
    "dynamic": (dict(), "dynamic"),
    "fp16": (dict(), "fp16"),
    "int8": (dict(), "int8"),
    "int8_uint8io": (dict(), "int8_uint8io"),
    "int8_fixed_batch": (dict(batch_size=1), "int8_int8io"),
    "int16x8": (dict(), "int16x8"),
    "int16x8_int16io": (dict(), "int16x8_int16io"),
    "dynamic_hw": (dict(input_shape=(None, None, 1), global_pool=True), "float32"),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="output directory (default: tests/data)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name, (build_kwargs, mode) in FIXTURES.items():
        data = convert(build(**build_kwargs), mode)
        path = os.path.join(args.out, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes")
    rng = np.random.default_rng(SEED + 2)
    images = rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    # Labels are the FP32 model's own predictions on the preprocessed images
    # (x / 255), so the float model scores 100% top-1 and quantized ones close to it.
    logits = build().predict(images.astype(np.float32) / 255.0, verbose=0)
    np.savez(os.path.join(args.out, "eval.npz"), images=images, labels=logits.argmax(-1).astype(np.int64))
    print(f"{os.path.join(args.out, 'eval.npz')}: {len(images)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
