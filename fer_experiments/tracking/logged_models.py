"""Models in MLflow: logging a trained Keras model as a LoggedModel, and loading one by URI."""
from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.models import infer_signature

from ..errors import UserError
from ..models.files import load_keras_file, safely

BACKEND_PACKAGES = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}


def log_model(model: keras.Model, x_example: np.ndarray, *, file_stem: str, register: str = "",
              name: str = "model", metrics: dict | None = None, plain: keras.Model | None = None,
              diagram: bool = True, timestamp: int | None = None) -> str:
    """The Keras 3 flavour (with a signature) as a LoggedModel called `name` (the preset or model, so
    the Models tab tells them apart) carrying `metrics`, the plain `.keras` file, a summary and (with
    `diagram`) an architecture diagram, into the active run. Returns the model's URI (``models:/m-…``)."""
    example = x_example[:2].astype("float32")
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    # No input_example: mlflow.keras 3.17 writes it before creating the model folder and fails
    # (FileNotFoundError); the signature carries the input spec.
    info = mlflow.keras.log_model(model, name=name, signature=signature, registered_model_name=register or None,
                                  pip_requirements=pip_requirements())
    try:
        _log_beside(model, info.model_id, file_stem=file_stem, metrics=metrics, plain=plain, diagram=diagram,
                    timestamp=timestamp)
    except BaseException:  # e.g. the disk filled up: the run fails, and its model must not read READY
        _mark_failed(info.model_id)
        raise
    return info.model_uri


def _log_beside(model, model_id: str, *, file_stem: str, metrics: dict | None, plain, diagram: bool,
                timestamp: int | None) -> None:
    if metrics:  # with the run's own timestamp of these values: the same entries, not a second copy
        mlflow.log_metrics(metrics, model_id=model_id, timestamp=timestamp)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{file_stem}.keras"
        model.save(path)
        mlflow.log_artifact(str(path), "keras")
        if plain is not None:  # the model before temperature scaling, still at hand
            plain.save(Path(tmp) / f"{file_stem}-uncalibrated.keras")
            mlflow.log_artifact(str(Path(tmp) / f"{file_stem}-uncalibrated.keras"), "keras")
        lines: list[str] = []
        model.summary(print_fn=lambda s, **_: lines.append(s), expand_nested=False)
        mlflow.log_text("\n".join(lines), "model_summary.txt")
        if diagram:
            _log_diagram(model, Path(tmp) / "architecture.png")


def _mark_failed(model_id: str) -> None:
    try:
        mlflow.MlflowClient().finalize_logged_model(model_id, "FAILED")
    except Exception as exc:  # the store itself may be what failed; the original error matters more
        warnings.warn(f"logged model {model_id} could not be marked FAILED ({exc})", stacklevel=3)


def delete_run_models(run_id: str) -> None:
    """Delete the LoggedModels a run logged so far (a resumed run logs its model again)."""
    experiment = mlflow.get_run(run_id).info.experiment_id
    for found in mlflow.search_logged_models(experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}'",
                                             output_format="list"):
        mlflow.MlflowClient().delete_logged_model(found.model_id)


def _log_diagram(model: keras.Model, path: Path) -> None:
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, expand_nested=False, dpi=72)
        mlflow.log_artifact(str(path))
    except (ImportError, OSError) as exc:  # pydot/graphviz missing: skip, say so, keep going
        warnings.warn(f"architecture diagram skipped ({exc}); install graphviz to get it", stacklevel=3)


@functools.cache
def pip_requirements() -> list[str]:
    """What a logged model needs to load, pinned to this environment: MLflow, Keras, NumPy and the
    installed package(s) of the backend running it. The models are built-in Keras layers only, so this
    is the list MLflow's own inference finds — given here because that inference loads the model in a
    subprocess, seconds of every logged model (every training run, every Optuna trial)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("mlflow", "keras", "numpy", *BACKEND_PACKAGES.get(keras.backend.backend(), ())):
        try:
            found.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # e.g. tensorflow where tensorflow-cpu is installed
            continue
    return found


def load_model(uri: str) -> keras.Model:
    """A logged model (``models:/…``, ``runs:/…``) or a ``.keras`` file."""
    if uri.endswith(".keras") and ":/" not in uri:
        return load_keras_file(uri)
    try:
        return safely(mlflow.keras.load_model, uri)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"model '{uri}' cannot be loaded ({exc.message.strip().splitlines()[0]}): pass "
                        f"models:/<model id>, runs:/<run id>/<model name> or a .keras file from this tracking store "
                        f"({mlflow.get_tracking_uri()})") from None
