"""`OutputRecords` (a part of `MlflowTracker`): what `fer-exp report` reads and records, and the run
`fer-exp export --log` makes."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd

from ..errors import UserError
from . import tags as T


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
