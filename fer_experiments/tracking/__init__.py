"""Everything MLflow, in one package, behind one interface: `Tracker` (`base`), implemented by
`MlflowTracker` (the tracking store), `FileTracker` (a run folder, no MLflow installed) and
`NullTracker` (nothing). Nothing outside this package imports mlflow (the CLI only catches its
exception type). MLflow's own defaults apply: with no MLFLOW_TRACKING_URI the store is
`sqlite:///mlflow.db` with artifacts in `./mlruns/`, which is what `mlflow ui` shows.

- `base`: the `Tracker` protocol, `NullTracker`, and `ending` (the one rule for a run's final status);
- `mlflow_tracker`: `MlflowTracker`, with `study_runs` (an Optuna study's parent and trial runs),
  `outputs` (the report's and export's runs) and `logged_models` (log and load models by URI);
- `files`: `FileTracker`; `imports` turns its folder into an MLflow run (`fer-exp import-run`);
- `records`: what a run records, independent of where it goes; `epochs`: the per-epoch metrics callback;
- `tags`: every tag name the project writes.

Names are resolved lazily, so `tags`, `FileTracker` and `NullTracker` work where MLflow is not
installed (an accelerator machine): mlflow is imported on first use of something that needs it.
"""
from __future__ import annotations

import importlib

from . import tags
from .tags import experiment_name_for

_FROM = {"Tracker": "base", "NullTracker": "base", "MlflowTracker": "mlflow_tracker", "FileTracker": "files"}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["experiment_name_for", "tags", *_FROM]
