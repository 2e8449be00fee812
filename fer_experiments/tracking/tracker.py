"""The one small object the trainer records through (big_vision's metric writer).

`MlflowTracker` is the default: a run in MLflow with everything `runs` logs. `NullTracker` records
nothing and keeps no run, so "tracking off" is one word — the overhead benchmark times the real
trainer both ways. `files.FileTracker` records into a folder where MLflow is not installed.
"""
from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import keras


class MlflowTracker:
    """Records a training run in the MLflow tracking store (MLFLOW_TRACKING_URI or MLflow's default)."""

    enabled = True

    def __init__(self):
        from . import runs  # noqa: PLC0415 — MLflow only where this tracker is used

        self._runs = runs

    @contextlib.contextmanager
    def run(self, *, experiment: str, run_name: str, tags: dict, resume_run_id: str | None = None,
            parent_run_id: str | None = None, description: str = ""):
        self._runs.check_store()
        with self._runs.active_run(experiment=experiment, run_name=run_name, tags=tags, resume_run_id=resume_run_id,
                             parent_run_id=parent_run_id, description=description) as run:
            yield run.info.run_id

    def log_config(self, config: dict) -> None:
        self._runs.log_config(config)

    def log_params(self, params: dict) -> None:
        self._runs.log_params(params)

    def log_dataset(self, ds) -> None:
        self._runs.log_dataset(ds)

    def epoch_callback(self, n_train: int) -> keras.callbacks.Callback:
        return self._runs.EpochLogger(n_train)

    def log_evaluation(self, ev, title: str) -> dict[str, float]:
        return self._runs.log_evaluation(ev, title)

    def log_image(self, image, *, key: str, step: int) -> None:
        self._runs.log_image(image, key=key, step=step)

    def log_history(self, history_csv: Path, curves_fig) -> None:
        self._runs.log_history(history_csv, curves_fig)

    def log_summary(self, summary: dict, all_metrics: dict) -> None:
        self._runs.log_summary(summary, all_metrics)

    def log_model(self, model: keras.Model, x_example, *, file_stem: str, register: str = "", name: str = "model",
                  metrics: dict | None = None, plain: keras.Model | None = None) -> str:
        return self._runs.log_model_files(model, x_example, file_stem=file_stem, register=register, name=name,
                                          metrics=metrics, plain=plain)

    def set_tag(self, key: str, value: str) -> None:
        self._runs.set_tag(key, value)

    def run_config(self, run_id: str) -> dict:
        return self._runs.run_config(run_id)

    def run_tags(self, run_id: str) -> dict:
        return self._runs.run_tags(run_id)


class NullTracker:
    """Records nothing: same calls, no run, no files (the figures are still computed and returned)."""

    enabled = False

    @contextlib.contextmanager
    def run(self, **_):
        yield f"untracked-{uuid.uuid4().hex}"  # names the resume checkpoint folder only

    def epoch_callback(self, n_train: int) -> keras.callbacks.Callback:
        return keras.callbacks.Callback()

    def log_evaluation(self, ev, title: str) -> dict[str, float]:
        return ev.metrics()

    def log_model(self, *args, **kwargs) -> str:
        return ""

    def log_history(self, history_csv: Path, curves_fig) -> None:
        import matplotlib.pyplot as plt  # noqa: PLC0415

        plt.close(curves_fig)

    def log_config(self, *args, **kwargs) -> None: ...
    def log_params(self, *args, **kwargs) -> None: ...
    def log_dataset(self, *args, **kwargs) -> None: ...
    def log_summary(self, *args, **kwargs) -> None: ...
    def log_image(self, *args, **kwargs) -> None: ...
    def set_tag(self, *args, **kwargs) -> None: ...
