"""The one interface everything records through (big_vision's metric writer), and how a run ends.

`Tracker` is what the trainer, `evaluate`, `tune`, `export --log` and `report` call. Three classes
implement it: `MlflowTracker` (a run in the MLflow tracking store), `files.FileTracker` (a run in a
folder, no MLflow installed) and `NullTracker` here (nothing recorded, so "tracking off" is one word
and benchmarks time the real trainer). `ending` is the one place a run's final status is decided.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import keras

from ..errors import UserError

STATUSES = ("FINISHED", "FAILED", "KILLED")


@contextlib.contextmanager
def ending(end: Callable[[str], None], run_id: Callable[[], str] | None = None) -> Iterator[None]:
    """Calls ``end(status)`` once the body is left: FINISHED, KILLED on an interrupt (Ctrl-C, or the
    SIGTERM that `MlflowTracker` turns into one), FAILED on any other exception (re-raised). The
    interrupt carries the run it ended (`stopped_run`: the innermost), for the console's last line."""
    try:
        yield
    except KeyboardInterrupt as stop:
        end("KILLED")
        if run_id is not None and run_id() and not getattr(stop, "stopped_run", ""):
            stop.stopped_run = run_id()
        raise
    except BaseException:
        end("FAILED")
        raise
    else:
        end("FINISHED")


@runtime_checkable
class Tracker(Protocol):
    """What a run records. `run` is a context manager yielding the run id, and sets `run_id` meanwhile."""

    enabled: bool
    run_id: str

    def run(self, *, experiment: str, run_name: str, tags: dict, description: str = "",
            resume_run_id: str | None = None, parent_run_id: str | None = None
            ) -> contextlib.AbstractContextManager[str]: ...
    def log_config(self, config: dict, name: str = "config.json") -> None: ...
    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int = 0) -> None: ...
    def log_dataset(self, ds) -> None: ...
    def epoch_callback(self, n_train: int) -> keras.callbacks.Callback: ...
    def log_evaluation(self, ev, title: str) -> dict[str, float]: ...
    def log_image(self, image, *, key: str, step: int) -> None: ...
    def log_history(self, history_csv: Path, curves_fig) -> None: ...
    def log_summary(self, summary: dict, all_metrics: dict) -> None: ...
    def log_model(self, model: keras.Model, x_example, *, file_stem: str, register: str = "", name: str = "model",
                  metrics: dict | None = None, plain: keras.Model | None = None, diagram: bool = True,
                  copies: bool = True) -> str: ...
    def set_tag(self, key: str, value: str) -> None: ...
    def run_config(self, run_id: str) -> dict: ...
    def run_tags(self, run_id: str) -> dict: ...


class NullTracker:
    """Records nothing: same calls, no run, no files (the figures are still computed and returned)."""

    enabled = False

    def __init__(self):
        self.run_id = ""

    @contextlib.contextmanager
    def run(self, *, experiment: str, run_name: str, tags: dict, description: str = "",
            resume_run_id: str | None = None, parent_run_id: str | None = None):
        self.run_id = resume_run_id or f"untracked-{uuid.uuid4().hex}"  # names the resume checkpoint folder only
        try:
            yield self.run_id
        finally:
            self.run_id = ""

    def epoch_callback(self, n_train: int) -> keras.callbacks.Callback:
        return keras.callbacks.Callback()

    def log_evaluation(self, ev, title: str) -> dict[str, float]:
        return ev.metrics()

    def log_model(self, model, x_example, *, file_stem: str, register: str = "", name: str = "model",
                  metrics: dict | None = None, plain=None, diagram: bool = True, copies: bool = True) -> str:
        return ""

    def log_history(self, history_csv: Path, curves_fig) -> None:
        import matplotlib.pyplot as plt  # figures are closed wherever they go

        plt.close(curves_fig)

    def log_config(self, config: dict, name: str = "config.json") -> None: ...
    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int = 0) -> None: ...
    def log_dataset(self, ds) -> None: ...
    def log_summary(self, summary: dict, all_metrics: dict) -> None: ...
    def log_image(self, image, *, key: str, step: int) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...

    def run_config(self, run_id: str) -> dict:
        raise UserError("an untracked run cannot be resumed: resume a run recorded in MLflow or a run folder")

    run_tags = run_config


def check_resumable(run_id: str, status: str) -> None:
    """Only a run that did not end (killed: RUNNING after kill -9, KILLED after SIGTERM) is resumed.
    A FINISHED one would train again into the same run; a FAILED one has no checkpoint any more."""
    if status == "FINISHED":
        raise UserError(f"run {run_id} is FINISHED: there is nothing to resume (its model is logged); train a new "
                        f"run, or `fer-exp evaluate` its model")
    if status == "FAILED":
        raise UserError(f"run {run_id} ended FAILED, and a failed run's checkpoint is removed: train a new run "
                        f"(the failure is in its log and its fer.error tag)")
