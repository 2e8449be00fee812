"""Everything MLflow, in one package: nothing outside it imports mlflow (the CLI only catches its
exception type). MLflow's own defaults apply: with no MLFLOW_TRACKING_URI the store is
`sqlite:///mlflow.db` with artifacts in `./mlruns/`, which is what `mlflow ui` shows.

- `runs`: a run's life (FINISHED / FAILED / KILLED), params, epoch metrics, datasets, evaluations, models;
- `tracker`: the object the trainer records through (`MlflowTracker`, or `NullTracker` for none);
- `studies`: an Optuna study's parent run and trial children; `reports`, `exports`: those commands' runs;
- `tags`: every tag name the project writes.
"""
from __future__ import annotations

from . import tags
from .runs import (EpochLogger, active_run, check_store, current_run_id, experiment_name_for, load_model, log_config,
                   log_dataset, log_evaluation, log_figure, log_history, log_model_files, log_params, log_summary,
                   run_config, run_tags, set_tag, tracking_uri)
from .tracker import MlflowTracker, NullTracker

SYNTHETIC_TAG = tags.SYNTHETIC

__all__ = ["EpochLogger", "MlflowTracker", "check_store", "NullTracker", "SYNTHETIC_TAG", "active_run", "current_run_id",
           "experiment_name_for", "load_model", "log_config", "log_dataset", "log_evaluation", "log_figure",
           "log_history", "log_model_files", "log_params", "log_summary", "run_config", "run_tags", "set_tag", "tags", "tracking_uri"]
