"""`MlflowTracker`: a run in the MLflow tracking store, and every MLflow call this project makes.

MLflow's own defaults apply: with no MLFLOW_TRACKING_URI the store is `sqlite:///mlflow.db` with
artifacts in `./mlruns/`, which is what `mlflow ui` with no arguments shows. Besides the `Tracker`
calls of a training run, the tracker has what the other commands record or read: a study's parent
and trial runs (`study_runs.StudyRecords`), the report's and export's runs (`outputs.OutputRecords`),
and logged models (`logged_models`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
import warnings
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from ..errors import UserError, read_only_store
from . import interrupts, logged_models, records, ui_views
from .base import check_resumable, ending
from .epochs import EpochMetrics
from .outputs import OutputRecords
from .repeat_runs import RepeatRecords
from .study_runs import StudyRecords

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # `mlflow ui` opens on the runs
FINAL_KEYS = ("validation_accuracy", "test_accuracy", "best_val_accuracy", "epochs_run")  # logged once, at the end
AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")


def refused(exc) -> bool:
    """A basic-auth server's 401/403 (a JSON error code, or only the HTTP status where the body is text)."""
    text = str(exc)
    return exc.error_code in AUTH_CODES or "error code 401" in text or "error code 403" in text


PROBE_S = 10  # seconds to wait for a tracking server's /health before saying it is unreachable


def reachable() -> None:
    """A tracking server that does not answer is one line within PROBE_S, not MLflow's minutes of
    retries (7, with backoff) ending in a traceback. Any HTTP answer counts: 401/403 are check_store's."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_S)
    except requests.RequestException as exc:
        reason = "no answer" if isinstance(exc, requests.Timeout) else "connection failed"
        raise UserError(f"the tracking server {uri} is unreachable ({reason} within {PROBE_S} s): start it, or fix "
                        f"MLFLOW_TRACKING_URI (unset, runs go to the local store sqlite:///mlflow.db)") from None


def writable() -> None:
    """A local SQLite store on a read-only disk (or without write permission) is one line before
    any work: MLflow would print a traceback per failed statement on the way."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    if (db.exists() and not os.access(db, os.W_OK)) or (db.parent.exists() and not os.access(db.parent, os.W_OK)):
        raise UserError(read_only_store(uri))


def _final_timestamp(run_id: str, logged: set[str]) -> int:
    """The timestamp a killed attempt gave its final values (0 if it logged none): a LoggedModel's
    metrics are run metrics too, and an entry logged again with the same key, step, value and
    timestamp is the same entry in MLflow's store, not a second point."""
    for key in FINAL_KEYS:
        if key in logged:
            return mlflow.MlflowClient().get_metric_history(run_id, key)[0].timestamp
    return 0


def _ender(before):
    """`mlflow.end_run` for the run started after `before` (the run active then, or None): never
    another's, and nothing where the start failed before one began."""
    def end(status: str) -> None:
        active = mlflow.active_run()
        if active is not None and (before is None or active.info.run_id != before.info.run_id):
            mlflow.end_run(status)
    return end


def mark_experiment(experiment_id: str) -> None:
    """The experiment's tags that make `mlflow ui` open it on its runs."""
    for key, value in EXPERIMENT_KIND.items():
        ui_views.set_experiment_tag(experiment_id, key, value)


def _raise_keyboard_interrupt(signum, frame):  # SIGTERM (mlflow run's Ctrl-C, kill) → run ends KILLED
    interrupts.interrupt(f"signal {signum}", frame)  # raised where library code cannot lose it


class MlflowTracker(StudyRecords, OutputRecords, RepeatRecords):
    """Records into the MLflow tracking store (MLFLOW_TRACKING_URI or MLflow's default)."""

    enabled = True

    def __init__(self):
        self.run_id = ""
        self._finals: set[str] = set()  # end-of-run metrics a resumed run had logged before it was killed
        self._final_ts = 0  # one timestamp for every final value, so the model's copies are the same entries
        self._datasets: dict = {}  # metric prefix (validation, test) → the run's MLflow dataset of that split

    # -- the run ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def run(self, *, experiment: str, run_name: str, tags: dict, description: str = "",
            resume_run_id: str | None = None, parent_run_id: str | None = None):
        """Start (or continue) a run and always end it (`base.ending`).

        Inside `mlflow run`, MLFLOW_RUN_ID names the run MLflow created: we continue it rather than
        starting a second, orphaned one. `resume_run_id` continues a run that was killed mid-training;
        `parent_run_id` makes a nested child (an Optuna trial). MLflow samples the machine's CPU and
        memory into the run's system metrics meanwhile."""
        self.check_store()
        main = threading.current_thread() is threading.main_thread()
        with interrupts.scope() if main else contextlib.nullcontext():
            # From before the run starts: a stop or a store error between its creation and its first
            # record still ends it (KILLED / FAILED), never leaves it RUNNING (`end_run` without one: no-op).
            previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if main else None
            try:
                with ending(_ender(mlflow.active_run()), lambda: self.run_id):
                    run = self._start(experiment, run_name, resume_run_id, parent_run_id)
                    named = os.environ.get("MLFLOW_RUN_ID") and not (resume_run_id or parent_run_id)  # the entry point's
                    mlflow.set_tags({**tags, **({"mlflow.runName": run_name} if named else {}),
                                     **({MLFLOW_RUN_NOTE: description} if description else {})})
                    self.run_id = run.info.run_id
                    self._finals = set(run.data.metrics) if resume_run_id else set()
                    self._final_ts = _final_timestamp(self.run_id, self._finals)
                    yield self.run_id
            finally:
                self.run_id, self._finals, self._final_ts, self._datasets = "", set(), 0, {}
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

    def _start(self, experiment: str, run_name: str, resume_run_id: str | None, parent_run_id: str | None):
        try:
            return self._start_run(experiment, run_name, resume_run_id, parent_run_id)
        except mlflow.exceptions.MlflowException as exc:
            if not refused(exc):
                raise
            who = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
            raise UserError(f"the tracking server {mlflow.get_tracking_uri()} does not let user {who!r} write to "
                            f"experiment {experiment!r} (HTTP 403): ask its admin for EDIT on it "
                            f"(get_app_client('basic-auth').grant_user_permission), or record into an "
                            f"experiment of your own with --mlflow-experiment") from None

    def _start_run(self, experiment: str, run_name: str, resume_run_id: str | None, parent_run_id: str | None):
        start = functools.partial(mlflow.start_run, log_system_metrics=True)
        env_run = os.environ.get("MLFLOW_RUN_ID")
        if resume_run_id:
            check_resumable(resume_run_id, self._existing_run(resume_run_id).info.status)
            run = start(run_id=resume_run_id)
        elif parent_run_id:
            # Created through the client: the fluent API would pick up MLFLOW_RUN_ID (the parent,
            # inside `mlflow run`), and the parent may be held by another process.
            client = mlflow.MlflowClient()
            exp_id = client.get_run(parent_run_id).info.experiment_id
            child = client.create_run(exp_id, run_name=run_name, tags={MLFLOW_PARENT_RUN_ID: parent_run_id})
            run = start(run_id=child.info.run_id)
        elif env_run:
            run = start(run_id=env_run)
        else:
            mlflow.set_experiment(experiment)
            run = start(run_name=run_name)
        mark_experiment(run.info.experiment_id)
        ui_views.save_view(run.info.experiment_id, ui_views.HEADLINE_VIEW, "FER: headline figures",
                           ui_views.headline_state())
        return run

    def ui_links(self, run_id: str) -> dict[str, str]:
        """Where `mlflow ui` shows the run and its experiment's runs (the headline view), as links that
        open the runs, not MLflow's GenAI overview (`ui_views`)."""
        exp = mlflow.MlflowClient().get_run(run_id).info.experiment_id
        return {"runs": ui_views.runs_link(exp), "run": ui_views.run_link(exp, run_id)}

    # -- what a run records -------------------------------------------------------------------------
    def log_config(self, config: dict, name: str = "config.json") -> None:
        mlflow.log_dict(config, name)

    def log_params(self, params: dict) -> None:
        """Log params, skipping keys the run already holds (the `-P` values `mlflow run` logged, or a
        resumed run's own): MLflow params are immutable, and those values are the explicit ones,
        which the resolved config keeps by construction."""
        existing = mlflow.get_run(self.run_id).data.params
        fresh = {k: records.param_value(v) for k, v in params.items() if k not in existing}
        if fresh:
            mlflow.log_params(fresh)

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        mlflow.log_metrics(metrics, step=step)

    def log_dataset(self, ds) -> None:
        """Each split as an MLflow dataset input (name, digest, source) with its per-class counts."""
        counts = ds.counts()
        for split, part in ds.splits.items():
            with warnings.catch_warnings():  # MLflow cannot tell which local source class a path is; either is right
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_numpy(part.x, targets=part.y, source=ds.source,
                                                 name=f"{ds.name}-{split}", digest=f"{ds.digest}-{split}"[:36])
            mlflow.log_input(dataset, context=split, tags=records.input_tags(counts[split], ds.synthetic))
            self._datasets[records.metric_prefix(split)] = dataset  # what the model's figures were measured on
        mlflow.log_dict(records.dataset_record(ds), "data/dataset.json")
        self.log_params(records.dataset_params(ds))

    def epoch_callback(self, n_train: int) -> keras.callbacks.Callback:
        return EpochMetrics(n_train, self.log_metrics)

    def log_image(self, image: np.ndarray, *, key: str, step: int) -> None:
        """One step of an image series (MLflow's image view: one key, a slider over the steps)."""
        mlflow.log_image(image, key=key, step=step)

    def log_evaluation(self, ev, title: str) -> dict[str, float]:
        metrics = ev.metrics()
        self._log_finals(metrics)
        for path, item in records.evaluation_artifacts(ev, title).items():
            if isinstance(item, str):
                mlflow.log_text(item, path)
            else:
                self._log_figure(item, path)
        return metrics

    def log_history(self, history_csv: Path, curves_fig) -> None:
        """The per-epoch history as CSV (what the notebook kept in `.log` files) and its curves."""
        mlflow.log_artifact(str(history_csv), "history")
        self._log_figure(curves_fig, "history/training_curves.png")

    def _log_finals(self, metrics: dict) -> None:
        """Final values, each logged once: a resumed run keeps those it had (the same weights gave them)."""
        self._final_ts = self._final_ts or int(time.time() * 1000)
        mlflow.log_metrics({k: v for k, v in metrics.items() if k not in self._finals}, timestamp=self._final_ts)

    def log_summary(self, summary: dict, all_metrics: dict) -> None:
        self._log_finals(summary)
        mlflow.log_text(json.dumps(all_metrics, indent=1, sort_keys=True), "evaluation/metrics.json")

    def log_model(self, model: keras.Model, x_example, *, file_stem: str, register: str = "", name: str = "model",
                  metrics: dict | None = None, plain: keras.Model | None = None, diagram: bool = True,
                  copies: bool = True) -> str:
        if self._finals:  # a resumed run may have been killed while logging its model: one model per run
            logged_models.delete_run_models(self.run_id)
        return logged_models.log_model(model, x_example, file_stem=file_stem, register=register, name=name,
                                       metrics=metrics, datasets=self._datasets, timestamp=self._final_ts or None,
                                       plain=plain, diagram=diagram, copies=copies)

    def set_tag(self, key: str, value: str) -> None:
        mlflow.set_tag(key, value)

    @staticmethod
    def _log_figure(fig, path: str) -> None:
        import matplotlib.pyplot as plt

        mlflow.log_figure(fig, path)
        plt.close(fig)

    # -- reading the store ----------------------------------------------------------------------------
    def run_config(self, run_id: str) -> dict:
        """The resolved config a run was started with (to resume it)."""
        check_resumable(run_id, self._existing_run(run_id).info.status)
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.json")
        return json.loads(Path(path).read_text())

    def run_tags(self, run_id: str) -> dict:
        return self._existing_run(run_id).data.tags

    def _existing_run(self, run_id: str):
        reachable()
        try:
            return mlflow.MlflowClient().get_run(run_id)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            raise UserError(f"run '{run_id}' is not in the tracking store {mlflow.get_tracking_uri()}: pass the id of "
                            f"one of its runs (or set MLFLOW_TRACKING_URI to the store it is in)") from None

    def load_model(self, uri: str) -> keras.Model:
        if uri.startswith(("models:/", "runs:/")):
            reachable()
        return logged_models.load_model(uri)

    @staticmethod
    def model_source(uri: str) -> tuple[str, dict]:
        """The run that logged the model at `uri` and its tags (`fer.synthetic` …): ("", {}) if none is known."""
        return logged_models.source_run_tags(uri)

    @staticmethod
    def tracking_uri() -> str:
        """The store runs go to (MLFLOW_TRACKING_URI, or MLflow's default sqlite:///mlflow.db)."""
        return mlflow.get_tracking_uri()

    def check_store(self) -> None:
        """One cheap request before any work, so missing credentials for a basic-auth tracking server
        are one line naming the fix, not a stack of HTTP errors after the study or the run has begun."""
        reachable()
        writable()
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
        except mlflow.exceptions.MlflowException as exc:
            if refused(exc):
                who = os.environ.get("MLFLOW_TRACKING_USERNAME")
                raise UserError(f"the tracking server {mlflow.get_tracking_uri()} refused "
                                f"{'user ' + repr(who) if who else 'an unauthenticated request'}: set "
                                f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of its basic-auth app"
                                ) from None
            raise
