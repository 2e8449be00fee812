"""MLflow side of `fer-exp export --log`: a run in the logged model's experiment holding the file."""
from __future__ import annotations

import mlflow

from . import tags as T
from .runs import active_run, log_params


def log_export(model_uri: str, fmt: str, path: str, *, params: dict, metrics: dict) -> str:
    """A new run tagged fer.run_kind=export beside the training run that logged `model_uri`; its id."""
    source_run = mlflow.get_run(mlflow.models.get_model_info(model_uri).run_id)
    experiment = mlflow.get_experiment(source_run.info.experiment_id).name
    tags = {T.RUN_KIND: "export", T.EXPORTED_MODEL: model_uri, T.EXPORT_FORMAT: fmt,
            T.SOURCE_RUN: source_run.info.run_id}
    with active_run(experiment=experiment, run_name=f"export-{fmt}", tags=tags) as run:
        log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(path, "export")
    return run.info.run_id
