"""The one model loader of `predict`, `explain`, `export` and `evaluate`: a logged model (models:/…,
runs:/…, through the tracking layer) or a `.keras` file (no MLflow needed)."""
from __future__ import annotations

from pathlib import Path

from ..data import CLASSES
from ..models import INPUT_SHAPE
from .faces import InferenceError

URI_FORMS = "models:/<model id>, runs:/<run id>/<model name> or a .keras file"


def load_model(uri: str, *, check_shape: bool = True):
    """The model `uri` names; with `check_shape`, one that maps 48×48 gray faces to the 7 CLASSES."""
    if ":/" not in uri:
        if not Path(uri).is_file():
            raise InferenceError(f"model '{uri}' not found: pass {URI_FORMS}")
        from ..models.files import load_keras_file

        model = load_keras_file(uri)
    else:
        from ..tracking import MlflowTracker

        model = MlflowTracker().load_model(uri)
    if check_shape and (tuple(model.input_shape[1:]) != INPUT_SHAPE or model.output_shape[-1] != len(CLASSES)):
        raise InferenceError(f"model '{uri}' maps {model.input_shape} to {model.output_shape}, not 48×48×1 faces "
                             f"to {len(CLASSES)} emotions: pass a model trained by fer-exp")
    return model
