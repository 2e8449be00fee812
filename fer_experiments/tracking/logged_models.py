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


# The step a LoggedModel is logged at. MLflow links every run metric logged at the model's step to
# the model (`Model.log`): at step 0 that is the first epoch's curves and the first system-metrics
# sample. No metric is logged at -1, so the model carries only the final figures given to it.
MODEL_STEP = -1


def log_model(model: keras.Model, x_example: np.ndarray, *, file_stem: str, register: str = "",
              name: str = "model", metrics: dict | None = None, datasets: dict | None = None,
              plain: keras.Model | None = None, diagram: bool = True, copies: bool = True,
              timestamp: int | None = None) -> str:
    """The Keras 3 flavour (with a signature) as a LoggedModel called `name` (the preset or model, so
    the Models tab tells them apart) carrying `metrics` (each with the dataset of its split, from
    `datasets`: split prefix → MLflow dataset), a summary and (with `diagram`) an architecture diagram,
    into the active run; with `copies`, also the plain `.keras` file (and `plain`, the model before
    temperature scaling). Returns the model's URI (``models:/m-…``)."""
    example = x_example[:2].astype("float32")
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    # No input_example: mlflow.keras 3.17 writes it before creating the model folder and fails
    # (FileNotFoundError); the signature carries the input spec.
    info = mlflow.keras.log_model(model, name=name, signature=signature, registered_model_name=register or None,
                                  pip_requirements=pip_requirements(), step=MODEL_STEP)
    try:
        _log_metrics(info.model_id, metrics or {}, datasets or {}, timestamp)
        _log_beside(model, file_stem=file_stem, plain=plain if copies else None, diagram=diagram, copies=copies)
    except BaseException:  # e.g. the disk filled up: the run fails, and its model must not read READY
        _mark_failed(info.model_id)
        raise
    return info.model_uri


def _log_metrics(model_id: str, metrics: dict, datasets: dict, timestamp: int | None) -> None:
    """Each figure once, with the dataset it was measured on (the model page's "Datasets used") and
    the run's own timestamp of it: the run's entry and the model's are then one metric, not two."""
    by_dataset: dict = {}
    for key, value in metrics.items():
        split = next((prefix for prefix in datasets if key.startswith(prefix)), None)
        by_dataset.setdefault(split, {})[key] = value
    for split, values in by_dataset.items():
        mlflow.log_metrics(values, model_id=model_id, timestamp=timestamp, step=0,
                           dataset=datasets.get(split) if split else None)


def _log_beside(model, *, file_stem: str, plain, diagram: bool, copies: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{file_stem}.keras"
        if copies:  # the LoggedModel holds the model already: this is the file the notebook kept
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
    import shutil
    import sys

    try:
        # Without graphviz, plot_model prints a line of its own and returns where IPython is installed
        # (Keras imports it if it is): look for `dot` first, and for the file after.
        if shutil.which("dot"):
            keras.utils.plot_model(model, to_file=str(path), show_shapes=True, expand_nested=False, dpi=72)
        if path.is_file():
            mlflow.log_artifact(str(path))
            return
        why = "Keras draws it with graphviz's `dot`, not found"
    except (ImportError, OSError) as exc:  # pydot/graphviz missing or broken: skip, say so, keep going
        why = str(exc)
    if not getattr(_log_diagram, "said", False):  # once a process: a study's every trial would repeat it
        _log_diagram.said = True
        print(f"warning: no architecture diagram in this process's runs ({why}): install graphviz "
              f"(apt-get install graphviz, or https://graphviz.org/download/) to get it", file=sys.stderr, flush=True)


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


def source_run_tags(uri: str) -> tuple[str, dict]:
    """The id and tags of the run that logged the model at `uri` (models:/…, runs:/…), or ("", {}) where
    MLflow knows of none (a model logged outside a run, a run since deleted)."""
    try:
        run_id = mlflow.models.get_model_info(uri).run_id
        return (run_id, mlflow.MlflowClient().get_run(run_id).data.tags) if run_id else ("", {})
    except (mlflow.exceptions.MlflowException, OSError):
        return "", {}
