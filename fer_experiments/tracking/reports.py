"""MLflow side of `fer-exp report`: the finished runs of an experiment, their confusion matrices, and
the report run that keeps the tables and figures."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd

from ..errors import UserError
from . import tags as T
from .runs import active_run


def finished_runs(experiment: str) -> pd.DataFrame:
    """MLflow's runs table (params.*, metrics.*, tags.* columns) of the FINISHED runs of `experiment`."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        names = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
        raise UserError(f"MLflow experiment '{experiment}' does not exist in {mlflow.get_tracking_uri()}: "
                        f"choose one of {names} (or set MLFLOW_TRACKING_URI to the right store)")
    return mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")


def confusion_matrix(run_id: str, split: str = "test") -> np.ndarray | None:
    """The counts a training or evaluation run logged for `split`, or None where it has none."""
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/{split}/confusion_matrix.json")
    except (mlflow.exceptions.MlflowException, OSError):  # a run without that split has no matrix
        return None
    return np.asarray(json.loads(text)["matrix"], dtype=float)


def log_report(experiment: str, files: list, n_runs: int) -> str:
    """A report run (fer.run_kind=report) in `experiment` holding `files`; its id."""
    with active_run(experiment=experiment, run_name=f"report-{experiment}",
                    tags={T.RUN_KIND: "report", T.REPORT_RUNS: str(n_runs)}) as run:
        for f in files:
            mlflow.log_artifact(str(f), "report")
    return run.info.run_id
