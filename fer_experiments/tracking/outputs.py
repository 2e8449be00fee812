"""`OutputRecords` (a part of `MlflowTracker`): what `fer-exp report` reads and records, and the run
`fer-exp export --log` makes."""
from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd

from ..errors import UserError
from . import logged_models, records
from . import tags as T

RUN_ID = re.compile(r"[0-9a-f]{32}")  # what MLflow's run ids look like
PREDICTIONS_CAP = 50_000_000  # bytes: a predictions table larger than this is not one of ours


class OutputRecords:
    """Reads an experiment's runs for the report; report and export runs (they use `self.run`)."""

    def finished_runs(self, experiment: str) -> pd.DataFrame:
        """MLflow's runs table (params.*, metrics.*, tags.* columns) of the FINISHED runs of `experiment`."""
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            names = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
            raise UserError(f"MLflow experiment '{experiment}' does not exist in {mlflow.get_tracking_uri()}: "
                            f"choose one of {names} (or set MLFLOW_TRACKING_URI to the right store)")
        return mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")

    def confusion_matrix(self, run_id: str, split: str = "test") -> np.ndarray | None:
        """The counts a training or evaluation run logged for `split`, or None where it has none."""
        try:
            text = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/{split}/confusion_matrix.json")
        except (mlflow.exceptions.MlflowException, OSError):  # a run without that split has no matrix
            return None
        return np.asarray(json.loads(text)["matrix"], dtype=float)

    def log_report(self, experiment: str, files: list, n_runs: int) -> str:
        """A report run (fer.run_kind=report) in `experiment` holding `files`; its id."""
        with self.run(experiment=experiment, run_name=f"report-{experiment}",
                      tags={T.RUN_KIND: "report", T.REPORT_RUNS: str(n_runs)}) as run_id:
            for f in files:
                mlflow.log_artifact(str(f), "report")
        return run_id

    def log_export(self, model_uri: str, fmt: str, path: str, *, params: dict, metrics: dict) -> str:
        """A run tagged fer.run_kind=export beside the training run that logged `model_uri`; its id."""
        source_run = mlflow.get_run(mlflow.models.get_model_info(model_uri).run_id)
        experiment = mlflow.get_experiment(source_run.info.experiment_id).name
        tags = {T.RUN_KIND: "export", T.EXPORTED_MODEL: model_uri, T.EXPORT_FORMAT: fmt,
                T.SOURCE_RUN: source_run.info.run_id}
        with self.run(experiment=experiment, run_name=f"export-{fmt}", tags=tags) as run_id:
            self.log_params(params)
            self.log_metrics(metrics)
            mlflow.log_artifact(path, "export")
        return run_id

    # -- fer-exp compare ------------------------------------------------------------------------------
    def comparison_arm(self, ref: str, split: str) -> dict:
        """What `compare` needs of one argument — a run id or name, a models:/ or runs:/ URI (its run), or a
        repeat set's parent (its FINISHED seeds): {label, run_ids, tables (each run's predictions on `split`), digests
        (each run's `<split>_images_digest`, "" where a run predates it)}."""
        run_id = ref
        if ref.startswith(("models:/", "runs:/")):
            run_id, _ = logged_models.source_run_tags(ref)
            if not run_id:
                raise UserError(f"{ref} names no model logged by a run in {mlflow.get_tracking_uri()}: pass a run id "
                                f"or a models:/ URI of this store")
        run = self._existing_run(run_id) if RUN_ID.fullmatch(run_id) or ref != run_id else self._named_run(ref)
        run_id = run.info.run_id
        kind, label = run.data.tags.get(T.RUN_KIND), run.data.tags.get("mlflow.runName", run_id[:8])
        if kind == "study":
            raise UserError(f"run {run_id} is a study's parent: compare its champion (models:/<name>@champion) or its "
                            f"trial runs")
        runs = [run]
        if kind == "repeats":
            runs = [r for r in self.repeat_children(run_id, run.data.tags[T.REPEAT_GROUP]).values()
                    if r.info.status == "FINISHED"]
            if not runs:
                raise UserError(f"repeat set {run_id} has no finished seed yet: finish it (rerun its command) first")
        return {"label": label, "run_ids": [r.info.run_id for r in runs],
                "tables": [self._predictions(r, split) for r in runs],
                "digests": [r.data.params.get(records.images_digest_param(split), "") for r in runs]}

    def _named_run(self, name: str):
        """The one active run called `name` in any experiment (a repeat set's parent, say, whose id differs
        from store to store)."""
        self.check_store()
        found = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                   filter_string=f"attributes.run_name = '{name.replace(chr(39), '')}'")
        if len(found) != 1:
            what = "no run" if not found else f"{len(found)} runs ({', '.join(r.info.run_id for r in found)})"
            raise UserError(f"'{name}' is not a run id, and {what} in {mlflow.get_tracking_uri()} bear that name: pass "
                            f"a run id, a models:/ URI or the name of exactly one run")
        return found[0]

    @staticmethod
    def _predictions(run, split: str) -> pd.DataFrame:
        path = f"evaluation/{split}/{records.PREDICTIONS}"
        listed = {a.path: a for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, f"evaluation/{split}")}
        if path not in listed:
            raise UserError(f"run {run.info.run_id} has no per-image predictions on its {split} split ({path}; runs made "
                            f"before they were logged have none): re-evaluate its model with `fer-exp evaluate "
                            f"{run.data.tags.get(T.MODEL_URI, 'MODEL_URI')} --data DATA` and compare that evaluation run")
        if (listed[path].file_size or 0) > PREDICTIONS_CAP:
            raise UserError(f"run {run.info.run_id}'s {path} is {listed[path].file_size} bytes, over {PREDICTIONS_CAP}: "
                            f"not a predictions table of this project")
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path)
        table = pd.read_csv(local)
        missing = {"image", "label", "predicted", "correct"} - set(table)
        if missing:
            raise UserError(f"run {run.info.run_id}'s {path} lacks column(s) {', '.join(sorted(missing))}: re-evaluate "
                            f"its model with `fer-exp evaluate`")
        return table

    @staticmethod
    def experiment_of(run_id: str) -> str:
        return mlflow.get_experiment(mlflow.get_run(run_id).info.experiment_id).name

    def log_comparison(self, experiment: str, files: list, run_ids: list[str], split: str) -> str:
        """A run tagged fer.run_kind=compare holding the comparison's files; its id."""
        with self.run(experiment=experiment, run_name=f"compare-{len(run_ids)}-runs",
                      tags={T.RUN_KIND: "compare", T.COMPARED_RUNS: " ".join(run_ids)}) as run_id:
            self.log_params({"split": split, "n_runs": len(run_ids)})
            for f in files:
                mlflow.log_artifact(str(f), "compare")
        return run_id
