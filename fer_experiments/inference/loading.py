"""The one model loader of `predict`, `explain`, `export` and `evaluate`: a logged model (models:/…,
runs:/…, through the tracking layer) or a `.keras` file (no MLflow needed)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..data import CLASSES
from ..models import INPUT_SHAPE
from .faces import InferenceError

URI_FORMS = "models:/<model id>, runs:/<run id>/<model name> or a .keras file"


def load_model(uri: str, *, check_shape: bool = True, warn_synthetic: bool = False):
    """The model `uri` names; with `check_shape`, one that maps 48×48 gray faces to the 7 CLASSES; with
    `warn_synthetic`, one line on standard error where it was trained on the synthetic faces."""
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
    if warn_synthetic and (warning := synthetic_warning(uri)):
        print(warning, file=sys.stderr, flush=True)
    return model


def synthetic_warning(uri: str) -> str:
    """A warning where the model at `uri` was trained on the synthetic faces (its run's `fer.synthetic`
    tag), else "". A bare .keras file names no run, so it gets none: nothing in it says what it saw."""
    if ":/" not in uri:
        return ""
    from ..tracking import MlflowTracker
    from ..tracking import tags as T

    run_id, tags = MlflowTracker().model_source(uri)
    if tags.get(T.SYNTHETIC) != "true":
        return ""
    return (f"warning: this model was trained on SYNTHETIC faces ({tags.get(T.DATASET, 'synthetic')}, run {run_id}): "
            f"its predictions on real photos mean nothing")
