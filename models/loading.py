"""Load a model by registry name or from a saved file.

:func:`load_model` accepts either a name from :func:`models.available_models`
(the model is built with fresh weights) or a path to a saved Keras model: a
``.keras`` file (loaded with ``safe_mode=True``), a legacy ``.h5``/``.hdf5``
file, or a Keras SavedModel directory (one holding ``saved_model.pb``). Saved
models are loaded with ``compile=False``: tfq compiles models where it trains
them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.registry import available_models, build_model

if TYPE_CHECKING:
    import tf_keras as keras

__all__ = ["ACCEPTED_FILE_TYPES", "is_model_path", "load_model"]

KERAS_SUFFIX = ".keras"
H5_SUFFIXES = (".h5", ".hdf5")
SAVED_MODEL_FILE = "saved_model.pb"
ACCEPTED_FILE_TYPES = (
    "a .keras file, a .h5/.hdf5 file, or a Keras SavedModel directory (with saved_model.pb)"
)


def is_model_path(s: str | os.PathLike[str]) -> bool:
    """Tells whether ``s`` names a saved model rather than a registry name.

    True for a path ending in ``.keras``, ``.h5`` or ``.hdf5`` (whether or not
    it exists) and for an existing directory that holds ``saved_model.pb``.

    Args:
        s: A string or path.

    Returns:
        Whether :func:`load_model` would treat ``s`` as a saved model.
    """
    path = Path(s)
    if path.suffix.lower() in (KERAS_SUFFIX, *H5_SUFFIXES):
        return True
    return (path / SAVED_MODEL_FILE).is_file()


def load_model(name_or_path: str | os.PathLike[str], **build_kwargs: Any) -> keras.Model:
    """Builds a registered model or loads a saved one.

    Args:
        name_or_path: A registered model name, or a path to a saved model
            (see the module docstring for the accepted file types).
        **build_kwargs: Passed to :func:`models.build_model` when building by
            name; not allowed with a path.

    Returns:
        A ``tf_keras.Model`` (not compiled when loaded from a file).

    Raises:
        FileNotFoundError: If ``name_or_path`` looks like a path (a model file
            suffix or a directory part) and does not exist.
        ValueError: If ``name_or_path`` is neither a registered name nor a saved
            model, or if ``build_kwargs`` are given with a path. Both errors
            list the valid names and the accepted file types.
    """
    if isinstance(name_or_path, str) and name_or_path in available_models():
        return build_model(name_or_path, **build_kwargs)

    path = Path(name_or_path)
    choices = f"valid names: {', '.join(available_models())}; accepted files: {ACCEPTED_FILE_TYPES}"
    if not path.exists():
        if is_model_path(path) or len(path.parts) > 1:
            raise FileNotFoundError(f"model path {str(path)!r} does not exist; {choices}")
        raise ValueError(f"unknown model name {str(name_or_path)!r}; {choices}")
    if not is_model_path(path):
        raise ValueError(f"{str(path)!r} is not a saved model; {choices}")
    if build_kwargs:
        raise ValueError(
            f"build arguments {sorted(build_kwargs)} only apply to registered model names, "
            f"not to the saved model {str(path)!r}"
        )

    import tf_keras as keras

    if path.suffix.lower() == KERAS_SUFFIX:
        return keras.models.load_model(str(path), safe_mode=True, compile=False)
    return keras.models.load_model(str(path), compile=False)

