"""Edge runner: benchmark and deploy ``.tflite`` models on CPU, GPU, Coral Edge TPU and Android.

Runs with only numpy and a LiteRT interpreter (``ai_edge_litert``, or
``tflite_runtime`` on devices that ship it); nothing in ``edge`` imports
TensorFlow. Entry points::

    python -m edge.bench MODEL.tflite [MORE.tflite ...] --target cpu|gpu|edgetpu|android
    python -m edge.edgetpu check|compile MODEL.tflite
    python -m edge.deploy MODEL.tflite --target android|coral

Interpreters come from the one factory, :func:`edge.litert.make_interpreter`.
"""
