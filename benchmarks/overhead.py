"""Benchmark part (d): what MLflow tracking costs the trainer.

The real trainer, `training.train`, run with the default `MlflowTracker` and with a `NullTracker`
(which records nothing), alternately (A/B/A/B…): the same data, model, optimizer and callbacks, so
the only difference is tracking. A timer callback, last in the list, takes each epoch's wall time
after every other callback has run; the first epoch of each run (graph tracing) is left out.
Tracking's end-of-run work (figures, model logging) is timed too, as whole runs. Both A/Bs are judged
by `validity` (per-epoch: every epoch after the first is a repeat; whole runs: every round is one).
"""
from __future__ import annotations

import time

import keras

from fer_experiments import tracking, training
from fer_experiments.config import build_config

from . import validity

EXPERIMENT = "fer-benchmark-overhead"  # short 4,000-image runs: kept out of the model comparison
ROUNDS = validity.MIN_REPEATS  # whole runs per arm: the fewest whose run-level A/B `validity` judges


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self._t = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def measure(data: str, *, limit: int = 4000, epochs: int = 4, rounds: int = ROUNDS, model: str = "custom_aug") -> dict:
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
    t = {f"{arm}_{what}_s": validity.summarize(samples[arm])
         for what, samples in (("epoch", epochs_s), ("run", runs_s)) for arm in samples}
    return {"model": model, "images": limit, "epochs": epochs, "rounds": rounds, "repeats": len(epochs_s["tracked"]),
            "precision": cfg.precision, "rules": validity.RULES, **t,
            "overhead": validity.ab(t["tracked_epoch_s"], t["untracked_epoch_s"], names=("tracked", "untracked")),
            "run_overhead": validity.ab(t["tracked_run_s"], t["untracked_run_s"], names=("tracked", "untracked")),
            "run_overhead_s": t["tracked_run_s"]["median"] - t["untracked_run_s"]["median"],
            "last_run_id": result.run_id}
