"""Everything MLflow, in one package: nothing outside it imports mlflow (the CLI only catches its
exception type). MLflow's own defaults apply: with no MLFLOW_TRACKING_URI the store is
`sqlite:///mlflow.db` with artifacts in `./mlruns/`, which is what `mlflow ui` shows.

- `runs`: a run's life (FINISHED / FAILED / KILLED), params, epoch metrics, datasets, evaluations, models;
- `tracker`: the object the trainer records through (`MlflowTracker`, or `NullTracker` for none);
- `files`: `FileTracker`, a run recorded in one folder with no MLflow installed; `imports` makes it an
  MLflow run later (`fer-exp import-run`);
- `studies`: an Optuna study's parent run and trial children; `reports`, `exports`: those commands' runs;
- `tags`: every tag name the project writes.

Names are resolved lazily, so `tags`, `files` and `NullTracker` work where MLflow is not installed
(an accelerator machine): mlflow is imported on first use of something that needs it.
"""
from __future__ import annotations

import importlib

from . import tags
from .tags import experiment_name_for

SYNTHETIC_TAG = tags.SYNTHETIC

_FROM = {
    **dict.fromkeys(("EpochLogger", "active_run", "check_store", "current_run_id", "load_model", "log_config",
                     "log_dataset", "log_evaluation", "log_figure", "log_history", "log_image", "log_model_files", "log_params",
                     "log_summary", "run_config", "run_tags", "set_tag", "tracking_uri"), "runs"),
    "MlflowTracker": "tracker", "NullTracker": "tracker", "FileTracker": "files",
}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SYNTHETIC_TAG", "experiment_name_for", "tags", *_FROM]
