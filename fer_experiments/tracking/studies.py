"""MLflow side of an Optuna study: one parent run per study, one nested child run per trial.

The parent is addressed by id through the client (never the fluent "active run"), because several
worker processes, on one or many machines, share it; its id travels in the study's user attributes.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from . import tags as T


def create_parent(experiment: str, study_name: str, tags: dict, params: dict) -> str:
    """The study's parent: the run `mlflow run` created (MLFLOW_RUN_ID), else a new one."""
    client = mlflow.MlflowClient()
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        run_id = client.create_run(exp_id, run_name=f"study-{study_name}").info.run_id
    client.set_tag(run_id, "mlflow.runName", f"study-{study_name}")
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))
    existing = client.get_run(run_id).data.params
    for key, value in params.items():
        if key not in existing:
            client.log_param(run_id, key, str(value))
    return run_id


def attach_worker(parent_run_id: str, study_name: str) -> None:
    """A second `mlflow run -e tune` on the same study: its own run becomes a worker under the parent."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id and run_id != parent_run_id:
        client = mlflow.MlflowClient()
        client.set_tag(run_id, MLFLOW_PARENT_RUN_ID, parent_run_id)
        client.set_tag(run_id, T.RUN_KIND, "worker")
        client.set_tag(run_id, "mlflow.runName", f"worker-{study_name}")


def mark_trial_run(run_id: str | None, state: str) -> None:
    """Record the trial's final Optuna state on its child run (PRUNED → KILLED, FAIL → FAILED)."""
    if not run_id:
        return
    client = mlflow.MlflowClient()
    client.set_tag(run_id, T.TRIAL_STATE, state)
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
    if client.get_run(run_id).info.status != status:
        client.set_terminated(run_id, status)


def summarize(parent_run_id: str, study, best_trial, figures: dict, trials_csv: str, *, done: bool) -> None:
    """Best params/value/run/model, the study's plots and its trials table on the parent run."""
    client = mlflow.MlflowClient()
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    client.log_metric(parent_run_id, "n_finished_trials", len(finished))
    client.log_metric(parent_run_id, "n_pruned_trials", sum(t.state.name == "PRUNED" for t in study.trials))
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "trials.csv"
        table.write_text(trials_csv)
        client.log_artifact(parent_run_id, str(table), "study")
        for name, fig in figures.items():
            client.log_figure(parent_run_id, fig, f"study/{name}.png")
            plt.close(fig)
    if best_trial is not None:
        best_run = best_trial.user_attrs.get("mlflow_run_id", "")
        client.log_metric(parent_run_id, "best_val_accuracy", best_trial.value)
        client.set_tag(parent_run_id, "best_trial", str(best_trial.number))
        client.set_tag(parent_run_id, "best_run_id", best_run)
        for key, value in best_trial.params.items():
            client.set_tag(parent_run_id, f"best.{key}", str(value))  # tags: the best may change on resume
        client.log_text(parent_run_id, json.dumps({"trial": best_trial.number, "value": best_trial.value,
                                                   "params": best_trial.params, "run_id": best_run},
                                                  indent=1), "study/best_trial.json")
        _copy_best_model(parent_run_id, best_trial, best_run)
    if done and not os.environ.get("MLFLOW_RUN_ID"):
        client.set_terminated(parent_run_id, "FINISHED")


def _copy_best_model(parent_run_id: str, best_trial, best_run: str) -> None:
    client = mlflow.MlflowClient()
    if client.get_run(parent_run_id).data.tags.get("best_model_trial") == str(best_trial.number):
        return
    uri = best_trial.user_attrs.get("model_uri")
    if not uri:
        return
    try:
        model = mlflow.keras.load_model(uri)
        with mlflow.start_run(run_id=parent_run_id, nested=True):
            info = mlflow.keras.log_model(model, name="best_model")
        client.set_tag(parent_run_id, "best_model_uri", info.model_uri)
        client.set_tag(parent_run_id, "best_model_trial", str(best_trial.number))
    except Exception as exc:  # noqa: BLE001 — a missing copy must not lose the study's summary
        warnings.warn(f"could not copy the best model from run {best_run}: {exc}", stacklevel=2)
