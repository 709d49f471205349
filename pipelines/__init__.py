"""Thin command-line drivers: ``python -m pipelines.<stage>``.

Each module exposes ``parse_args(argv)`` and ``main(args) -> int``; heavy
imports happen inside ``main``. Pipelines import ``tfq``, ``models`` and
``edge``; nothing imports ``pipelines``.
"""

import tfq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
