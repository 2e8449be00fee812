"""Everything MLflow, in one place: runs, params, epoch metrics, datasets, evaluations, models.

MLflow's own defaults apply: with no MLFLOW_TRACKING_URI the store is `sqlite:///mlflow.db` with
artifacts in `./mlruns/`, which is what `mlflow ui` with no arguments shows.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import tempfile
import threading
import warnings
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.models import infer_signature
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from .. import data as fer_data
from ..errors import UserError
from ..metrics import SplitEvaluation
from . import records
from .epochs import EpochMetrics
from .tags import experiment_name_for  # noqa: F401 — re-exported



def _raise_keyboard_interrupt(signum, frame):  # SIGTERM (mlflow run's Ctrl-C, kill) → run ends KILLED
    raise KeyboardInterrupt(f"signal {signum}")


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # `mlflow ui` opens on the runs


@contextlib.contextmanager
def active_run(*, experiment: str, run_name: str, tags: dict, resume_run_id: str | None = None,
               parent_run_id: str | None = None, description: str = ""):
    """Start (or continue) a run and always end it: FINISHED, FAILED on error, KILLED on interrupt.

    Inside `mlflow run`, MLFLOW_RUN_ID names the run MLflow created: we continue it rather than
    starting a second, orphaned one. `resume_run_id` continues a run that was killed mid-training.
    MLflow samples the machine's CPU and memory into the run's system metrics meanwhile.
    """
    env_run = os.environ.get("MLFLOW_RUN_ID")
    start = functools.partial(mlflow.start_run, log_system_metrics=True)
    if resume_run_id:
        run = start(run_id=resume_run_id)
    elif parent_run_id:
        # A child (an Optuna trial): created through the client, since the fluent API would pick up
        # MLFLOW_RUN_ID (the parent, inside `mlflow run`) and the parent may be held by another process.
        client = mlflow.MlflowClient()
        exp_id = client.get_run(parent_run_id).info.experiment_id
        child = client.create_run(exp_id, run_name=run_name, tags={MLFLOW_PARENT_RUN_ID: parent_run_id})
        run = start(run_id=child.info.run_id)
    elif env_run:
        run = start(run_id=env_run)
    else:
        mlflow.set_experiment(experiment)
        run = start(run_name=run_name)
    for key, value in EXPERIMENT_KIND.items():
        mlflow.MlflowClient().set_experiment_tag(run.info.experiment_id, key, value)
    named = env_run and not (resume_run_id or parent_run_id)  # `mlflow run` named it after the entry point
    mlflow.set_tags({**tags, **({"mlflow.runName": run_name} if named else {}),
                     **({MLFLOW_RUN_NOTE: description} if description else {})})
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if _main_thread() else None
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def log_params(params: dict) -> None:
    """Log params, skipping keys the run already holds (e.g. the `-P` values `mlflow run` logged,
    or a resumed run's own params): MLflow params are immutable, and those values are the explicit
    ones, which the resolved config keeps by construction."""
    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params
    fresh = {k: records.param_value(v) for k, v in params.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_dataset(ds: fer_data.Dataset) -> None:
    """Each split as an MLflow dataset input (name, digest, source) with its per-class counts."""
    counts = ds.counts()
    for split, part in ds.splits.items():
        with warnings.catch_warnings():  # MLflow cannot tell which local source class a path is; either is right
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(part.x, targets=part.y, source=ds.source,
                                             name=f"{ds.name}-{split}", digest=f"{ds.digest}-{split}"[:36])
        mlflow.log_input(dataset, context=split, tags=records.input_tags(counts[split], ds.synthetic))
    mlflow.log_dict(records.dataset_record(ds), "data/dataset.json")
    log_params(records.dataset_params(ds))


def EpochLogger(n_train: int) -> EpochMetrics:  # noqa: N802 — the callback, bound to the active run
    return EpochMetrics(n_train, mlflow.log_metrics)


def log_image(image: np.ndarray, *, key: str, step: int) -> None:
    """One step of an image series (MLflow's image view: one key, a slider over the steps)."""
    mlflow.log_image(image, key=key, step=step)


def log_evaluation(ev: SplitEvaluation, title: str = "") -> dict[str, float]:
    metrics = ev.metrics()
    mlflow.log_metrics(metrics)
    for path, item in records.evaluation_artifacts(ev, title).items():
        if isinstance(item, str):
            mlflow.log_text(item, path)
        else:
            log_figure(item, path)
    return metrics


def log_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    mlflow.log_figure(fig, path)
    plt.close(fig)


def log_model_files(model: keras.Model, x_example: np.ndarray, *, file_stem: str, register: str = "",
                    name: str = "model", metrics: dict | None = None, plain: keras.Model | None = None) -> str:
    """The Keras 3 flavour (with a signature) as a LoggedModel called `name` (the preset or model, so
    the Models tab tells them apart) carrying `metrics`, the plain `.keras` file, a summary and a
    diagram. Returns the logged model's URI (``models:/m-…``)."""
    example = x_example[:2].astype("float32")
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    # No input_example: mlflow.keras 3.17 writes it before creating the model folder and fails
    # (FileNotFoundError); the signature carries the input spec.
    info = mlflow.keras.log_model(model, name=name, signature=signature, registered_model_name=register or None,
                                  pip_requirements=pip_requirements())
    if metrics:
        mlflow.log_metrics(metrics, model_id=info.model_id)
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
        diagram = Path(tmp) / "architecture.png"
        try:
            keras.utils.plot_model(model, to_file=str(diagram), show_shapes=True, expand_nested=False, dpi=72)
            mlflow.log_artifact(str(diagram))
        except (ImportError, OSError) as exc:  # pydot/graphviz missing: skip, say so, keep going
            warnings.warn(f"architecture diagram skipped ({exc}); install graphviz to get it", stacklevel=2)
    return info.model_uri


BACKEND_PACKAGES = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}


@functools.cache
def pip_requirements() -> list[str]:
    """What a logged model needs to load, pinned to this environment: MLflow, Keras, NumPy and the
    installed package(s) of the backend running it. The models are built-in Keras layers only, so this
    is the list MLflow's own inference finds — given here because that inference loads the model in a
    subprocess, ~6 s of every logged model (every training run, every Optuna trial)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    found = []
    for package in ("mlflow", "keras", "numpy", *BACKEND_PACKAGES.get(keras.backend.backend(), ())):
        try:
            found.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # e.g. tensorflow where tensorflow-cpu is installed
            continue
    return found


def load_model(uri: str) -> keras.Model:
    """A logged model (``models:/…``, ``runs:/…``) or a ``.keras`` file."""
    if uri.endswith(".keras") and "://" not in uri and ":/" not in uri:
        return keras.saving.load_model(uri)
    try:
        return mlflow.keras.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"model '{uri}' cannot be loaded ({exc.message.strip().splitlines()[0]}): pass "
                         f"models:/<model id>, runs:/<run id>/<model name> or a .keras file from this tracking store "
                         f"({mlflow.get_tracking_uri()})") from None


def log_config(config: dict) -> None:
    mlflow.log_dict(config, "config.json")


def set_tag(key: str, value: str) -> None:
    mlflow.set_tag(key, value)


def log_history(history_csv: Path, curves_fig) -> None:
    """The per-epoch history as CSV (what the notebook kept in `.log` files) and its curves."""
    mlflow.log_artifact(str(history_csv), "history")
    log_figure(curves_fig, "history/training_curves.png")


def log_summary(summary: dict, all_metrics: dict) -> None:
    mlflow.log_metrics(summary)
    mlflow.log_text(json.dumps(all_metrics, indent=1, sort_keys=True), "evaluation/metrics.json")


def run_config(run_id: str) -> dict:
    """The resolved config a run was started with (to resume it)."""
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.json")
    return json.loads(Path(path).read_text())


def run_tags(run_id: str) -> dict:
    return mlflow.MlflowClient().get_run(run_id).data.tags


def current_run_id() -> str:
    run = mlflow.active_run()
    return run.info.run_id if run else ""


def tracking_uri() -> str:
    """The store runs go to (MLFLOW_TRACKING_URI, or MLflow's default sqlite:///mlflow.db)."""
    return mlflow.get_tracking_uri()


AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")


def check_store() -> None:
    """One cheap request before any work, so missing credentials for a basic-auth tracking server
    are one line naming the fix, not a stack of HTTP errors after the study or the run has begun."""
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except mlflow.exceptions.MlflowException as exc:
        text = str(exc)
        if exc.error_code in AUTH_CODES or "error code 401" in text or "error code 403" in text:
            who = os.environ.get("MLFLOW_TRACKING_USERNAME")
            raise UserError(f"the tracking server {mlflow.get_tracking_uri()} refused "
                            f"{'user ' + repr(who) if who else 'an unauthenticated request'}: set MLFLOW_TRACKING_USERNAME "
                            f"and MLFLOW_TRACKING_PASSWORD to a user of its basic-auth app") from None
        raise
