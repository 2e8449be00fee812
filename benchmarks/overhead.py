"""Benchmark part (d): what MLflow tracking costs the trainer.

The real trainer, `training.train`, run with the default `MlflowTracker` and with a `NullTracker`
(which records nothing), alternately (A/B/A/B…): the same data, model, optimizer and callbacks, so
the only difference is tracking. A timer callback, last in the list, takes each epoch's wall time
after every other callback has run; the first epoch of each run (graph tracing) is left out.
Tracking's end-of-run work (figures, model logging) is timed too, as whole runs.
"""
from __future__ import annotations

import statistics
import time

import keras

from fer_experiments import tracking, training
from fer_experiments.config import build_config

EXPERIMENT = "fer-benchmark-overhead"  # short 4,000-image runs: kept out of the model comparison


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self._t = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def measure(data: str, *, limit: int = 4000, epochs: int = 4, rounds: int = 2, model: str = "custom_aug") -> dict:
    cfg = build_config(model, data=data, limit=limit, epochs=epochs, patience=epochs).resolved()
    epochs_s = {"tracked": [], "untracked": []}
    runs_s = {"tracked": [], "untracked": []}
    for _ in range(rounds):
        for arm, tracker in (("tracked", tracking.MlflowTracker()), ("untracked", tracking.NullTracker())):
            timer = EpochTimer()
            t = time.perf_counter()
            result = training.train(cfg, callbacks=[timer], experiment=EXPERIMENT, tracker=tracker, verbose=0,
                                    extra_tags={tracking.tags.BENCHMARK: "overhead"})
            runs_s[arm].append(time.perf_counter() - t)
            epochs_s[arm] += timer.times[1:]
    on, off = (statistics.median(epochs_s[a]) for a in ("tracked", "untracked"))
    run_on, run_off = (statistics.median(runs_s[a]) for a in ("tracked", "untracked"))
    return {"model": model, "images": limit, "epochs": epochs, "rounds": rounds, "repeats": len(epochs_s["tracked"]),
            "precision": cfg.precision, "tracked_epoch_s": on, "untracked_epoch_s": off, "overhead": on / off - 1,
            "tracked_run_s": run_on, "untracked_run_s": run_off, "run_overhead_s": run_on - run_off,
            "tracked_epochs_s": epochs_s["tracked"], "untracked_epochs_s": epochs_s["untracked"],
            "last_run_id": result.run_id}
