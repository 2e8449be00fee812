"""Reading a `.keras` file the safe way (Keras only: no MLflow, so file-only machines load models too)."""
from __future__ import annotations

import zipfile

import keras

from ..errors import UserError


def load_keras_file(path) -> keras.Model:
    """A `.keras` file in Keras' safe mode (no code from the file runs); one line for what it refuses."""
    if not zipfile.is_zipfile(path):
        raise UserError(f"'{path}' is not a Keras .keras file (not a zip archive): pass a model saved with "
                        f"model.save('name.keras'), or a models:/ URI")
    return safely(keras.saving.load_model, path)


def safely(load, where):
    try:
        return load(where)
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        raise UserError(f"model '{where}' holds Python code (a Lambda layer), which Keras' safe mode refuses to "
                        f"run: use a model without one (fer-exp's models have none), or load it yourself with "
                        f"safe_mode=False only if you trust where it came from") from None
