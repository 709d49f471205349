"""tfq's model zoo: image classifiers built by name from spec tables.

``build_model("resnet18", input_shape=(32, 32, 3), num_classes=10)`` returns a
functional ``tf_keras`` (Keras 2) model that outputs logits, with
deterministic layer names (``stem_conv``, ``stage2_block1_conv1``, ...,
``head_pool``, ``logits``) for name-based quantization rules. Importing this
package is cheap: TensorFlow is imported when a model is first built or loaded.
"""

import tfq  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
from models import mobilenetv2, resnet, smallcnn  # noqa: F401  (register the builders)
from models.loading import ACCEPTED_FILE_TYPES, is_model_path, load_model
from models.registry import BuildOptions, Stem, available_models, build_model, register

__all__ = [
    "ACCEPTED_FILE_TYPES",
    "BuildOptions",
    "Stem",
    "available_models",
    "build_model",
    "is_model_path",
    "load_model",
    "register",
]
