"""Benchmark part (d): epoch time with the trainer's full MLflow logging vs the same fit untracked.

Tracked: `training.train` itself (MLflow run, per-epoch metrics, history, checkpoints). Untracked:
the same model, optimizer, data and non-MLflow callbacks fitted with no run. A timer callback,
last in the list, takes each epoch's wall time after every other callback has run.
"""
from __future__ import annotations

import statistics
import time

import tempfile

import keras
import mlflow

from fer_experiments import data as fer_data
from fer_experiments import training
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
    """Tracked and untracked runs alternate (A/B/A/B…), so load from other processes hits both alike;
    the first epoch of each (graph compilation) is left out of the medians."""
    cfg = build_config(model, data=data, limit=limit, epochs=epochs, patience=epochs).resolved()
    ds = training.shrink(fer_data.load_dataset(cfg.data), cfg.limit, cfg.seed)
    on, off, totals = [], [], []
    for _ in range(rounds):
        timer = EpochTimer()
        t = time.perf_counter()
        training.train(cfg, callbacks=[timer], experiment=EXPERIMENT, extra_tags={"fer.benchmark": "overhead"},
                       verbose=0)
        totals.append(time.perf_counter() - t)
        on += timer.times[1:]
        off += _untracked_epochs(cfg, ds)[1:]
    per_epoch = _direct_per_epoch_cost(cfg)
    return {"model": model, "images": len(ds.splits["train"].y), "repeats": len(on), "rounds": rounds,
            "per_epoch_tracking_s": per_epoch, "per_epoch_tracking_share": per_epoch / statistics.median(off),
            "tracked_epoch_s": statistics.median(on), "untracked_epoch_s": statistics.median(off),
            "overhead": statistics.median(on) / statistics.median(off) - 1, "tracked_run_total_s": statistics.median(totals),
            "tracked_epochs_s": on, "untracked_epochs_s": off}


def _untracked_epochs(cfg, ds) -> list[float]:
    """The same model, optimizer, data and early-stopping/plateau callbacks, fitted with no MLflow run."""
    tr, va = ds.splits["train"], ds.splits["val"]
    keras.utils.set_random_seed(cfg.seed)
    net, _ = training.build_model(cfg)
    loss, targets = training.loss_and_targets(cfg)
    net.compile(optimizer=training.make_optimizer(cfg, -(-len(tr.y) // cfg.batch_size)), loss=loss,
                metrics=["accuracy"])
    timer = EpochTimer()
    net.fit(tr.x.astype("float32"), targets(tr.y), batch_size=cfg.batch_size, epochs=cfg.epochs,
            validation_data=(va.x.astype("float32"), targets(va.y)), verbose=0,
            callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=cfg.epochs, restore_best_weights=True),
                       keras.callbacks.ReduceLROnPlateau("val_accuracy", patience=cfg.lr_patience), timer])
    return timer.times


def _direct_per_epoch_cost(cfg, n: int = 20) -> float:
    """What the trainer adds per epoch, timed directly: the epoch's metrics logged to MLflow, the
    CSV history row and the resume checkpoint (median of `n`)."""
    net, _ = training.build_model(cfg)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    net.train_on_batch(keras.ops.zeros((2, 48, 48, 1)), keras.ops.zeros((2,)))  # optimizer state exists
    logs = {k: 0.5 for k in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds",
                             "images_per_second")}
    costs = []
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name="overhead-probe",
                                                                tags={"fer.benchmark": "overhead"}):
        backup = keras.callbacks.BackupAndRestore(f"{tmp}/ckpt", double_checkpoint=True)
        csv = keras.callbacks.CSVLogger(f"{tmp}/history.csv", append=True)
        for cb in (backup, csv):
            cb.set_model(net)
            cb.on_train_begin()
        for epoch in range(n):
            t = time.perf_counter()
            backup.on_epoch_end(epoch, logs)
            csv.on_epoch_end(epoch, logs)
            mlflow.log_metrics(logs, step=epoch)
            costs.append(time.perf_counter() - t)
    return statistics.median(costs)
