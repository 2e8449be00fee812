"""`StudyRecords`, the MLflow side of an Optuna study (a part of `MlflowTracker`): one parent run per
study, one nested child run per trial.

The parent is addressed by id through the client (never the fluent "active run"), because several
worker processes, on one or many machines, share it; its id travels in the study's user attributes.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
from mlflow.entities import Metric, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from . import tags as T
from . import ui_views


class StudyRecords:
    """A study's parent and trial runs, through the client (several processes share them)."""

    def create_parent(self, experiment: str, study_name: str, tags: dict, params: dict, description: str = "") -> str:
        """The study's parent: the run `mlflow run` created (MLFLOW_RUN_ID), else a new one, with
        `description` as its note."""
        client = mlflow.MlflowClient()
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            exp = client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
            run_id = client.create_run(exp_id, run_name=f"study-{study_name}").info.run_id
        client.set_tag(run_id, "mlflow.runName", f"study-{study_name}")
        for key, value in {**tags, **({MLFLOW_RUN_NOTE: description} if description else {})}.items():
            client.set_tag(run_id, key, str(value))
        existing = client.get_run(run_id).data.params
        for key, value in params.items():
            if key not in existing:
                client.log_param(run_id, key, str(value))
        return run_id

    def study_link(self, parent_run_id: str, tuned: list[str]) -> str:
        """The link to the study's trials in `mlflow ui` (a saved view: best first, the tuned settings as
        columns), the view saved on the experiment if it is not there yet."""
        exp = mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id
        view = ui_views.study_view(parent_run_id)
        ui_views.save_view(exp, view, f"FER: study {parent_run_id[:12]}", ui_views.study_state(parent_run_id, tuned))
        return ui_views.runs_link(exp, view, chart=True)  # opens on the tuned settings against accuracy

    def attach_worker(self, parent_run_id: str, study_name: str) -> None:
        """A second `mlflow run -e tune` on the same study: its own run becomes a worker under the parent."""
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id and run_id != parent_run_id:
            client = mlflow.MlflowClient()
            client.set_tag(run_id, MLFLOW_PARENT_RUN_ID, parent_run_id)
            client.set_tag(run_id, T.RUN_KIND, "worker")
            client.set_tag(run_id, "mlflow.runName", f"worker-{study_name}")

    def mark_trial_run(self, run_id: str | None, state: str) -> None:
        """Record the trial's final Optuna state on its child run (PRUNED → KILLED, FAIL → FAILED)."""
        if not run_id:
            return
        client = mlflow.MlflowClient()
        client.set_tag(run_id, T.TRIAL_STATE, state)
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        if client.get_run(run_id).info.status != status:
            client.set_terminated(run_id, status)

    def stop_parent(self, parent_run_id: str) -> None:
        """The study's parent ends KILLED: its last worker was stopped. Inside `mlflow run` the parent
        is that command's run, which `mlflow run` itself ends when the worker exits."""
        if not os.environ.get("MLFLOW_RUN_ID"):
            mlflow.MlflowClient().set_terminated(parent_run_id, "KILLED")

    def parent_in_store(self, run_id: str) -> bool:
        """Whether the study's parent run exists in the current tracking store (a study's storage can
        outlive the store it was recorded in: another MLFLOW_TRACKING_URI, a deleted mlflow.db)."""
        try:
            mlflow.MlflowClient().get_run(run_id)
        except mlflow.exceptions.MlflowException:
            return False
        return True

    def confirmation_runs(self, parent_run_id: str) -> dict:
        """(trial number, seed) → {run_id, validation_accuracy, test_accuracy} of each FINISHED run under
        the study's parent that confirms a trial (`tags.CONFIRM_TRIAL`) with another seed."""
        client = mlflow.MlflowClient()
        exp_id = client.get_run(parent_run_id).info.experiment_id
        runs = client.search_runs([exp_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and "
                                            f"tags.`{T.CONFIRM_TRIAL}` IS NOT NULL and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time ASC"])
        return {(int(r.data.tags[T.CONFIRM_TRIAL]), int(r.data.tags[T.REPEAT_SEED])):
                {"run_id": r.info.run_id, **{k: r.data.metrics.get(k) for k in ("validation_accuracy", "test_accuracy")}}
                for r in runs}

    def log_confirmation(self, parent_run_id: str, table_csv: str, metrics: dict, tags: dict) -> None:
        """The confirmation table (study/confirmation.csv) and the confirmed champion's figures on the parent."""
        client = mlflow.MlflowClient()
        client.log_text(parent_run_id, table_csv, "study/confirmation.csv")
        now = int(time.time() * 1000)
        client.log_batch(parent_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                         tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def summarize(self, parent_run_id: str, study, best_trial, figures: dict, trials_csv: str, *, done: bool,
                  champion: str = "") -> str:
        """Best params/value/run/model, the study's plots and its trials table on the parent run. Only
        the client is used, so the parent stays RUNNING while other workers go on; when the study is
        `done`, `best_trial`'s model is registered as `champion` (alias champion) and the parent ends
        FINISHED. `best_trial` is the study's champion: the confirmed one (`studies.confirmation`), else
        Optuna's best trial. Returns the champion's URI (models:/<name>@champion) or ""."""
        client = mlflow.MlflowClient()
        finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        client.log_metric(parent_run_id, "n_finished_trials", len(finished))
        client.log_metric(parent_run_id, "n_pruned_trials", sum(t.state.name == "PRUNED" for t in study.trials))
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "trials.csv"
            table.write_text(trials_csv)
            client.log_artifact(parent_run_id, str(table), "study")
            for name, fig in figures.items():
                client.log_figure(parent_run_id, fig, f"study/{name}.png", save_kwargs={"bbox_inches": "tight"})
                plt.close(fig)
        uri = ""
        if best_trial is not None:
            best_run = best_trial.user_attrs.get("mlflow_run_id", "")
            self._carry_figures(parent_run_id, best_trial)
            client.set_tag(parent_run_id, "best_trial", str(best_trial.number))
            client.set_tag(parent_run_id, "best_run_id", best_run)
            client.set_tag(parent_run_id, "best_model_uri", best_trial.user_attrs.get("model_uri", ""))
            for key, value in best_trial.params.items():
                client.set_tag(parent_run_id, f"best.{key}", str(value))  # tags: the best may change on resume
            client.log_text(parent_run_id, json.dumps({"trial": best_trial.number, "value": best_trial.value,
                                                       "params": best_trial.params, "run_id": best_run},
                                                      indent=1), "study/best_trial.json")
            if done and champion and best_trial.user_attrs.get("model_uri"):
                try:
                    uri = self.register_champion(champion, best_trial.user_attrs["model_uri"], best_run)
                    client.set_tag(parent_run_id, "champion_model_uri", uri)
                except mlflow.exceptions.MlflowException as exc:  # e.g. the best trial ran against another store
                    warnings.warn(f"best trial {best_trial.number}'s model {best_trial.user_attrs['model_uri']} was not "
                                  f"registered as {champion}@champion: {str(exc).splitlines()[0]}", stacklevel=2)
        if done and not os.environ.get("MLFLOW_RUN_ID"):
            client.set_terminated(parent_run_id, "FINISHED")
        return uri

    @staticmethod
    def _carry_figures(parent_run_id: str, best_trial) -> None:
        """The best trial's model's figures on the parent (the same metric names as every run, so the
        study's row in the runs table shows its champion's accuracy); its objective value where the
        trial's model cannot be read (another store)."""
        client = mlflow.MlflowClient()
        uri = best_trial.user_attrs.get("model_uri", "")
        try:
            figures = {m.key: m.value for m in client.get_logged_model(uri.removeprefix("models:/")).metrics}
        except mlflow.exceptions.MlflowException:
            figures = {}
        figures.setdefault("validation_accuracy", best_trial.value)
        client.log_batch(parent_run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in figures.items()])

    def register_champion(self, name: str, model_uri: str, run_id: str) -> str:
        """The model registered under `name` with the alias `champion` moved to it: models:/<name>@champion.
        A champion already registered from that model (a finished study run again) is not registered twice."""
        client = mlflow.MlflowClient()
        try:
            current = client.get_model_version_by_alias(name, "champion")
        except mlflow.exceptions.MlflowException:  # no such model or alias yet
            current = None
        model_id = model_uri.removeprefix("models:/")
        if current is not None and (current.model_id == model_id or current.source in (model_uri, model_id)):
            return f"models:/{name}@champion"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = mlflow.register_model(model_uri, name)
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", version.version)
        return f"models:/{name}@champion"
