"""Per-epoch metrics for any tracker (no MLflow here): Keras's logs plus learning rate, seconds and
images/s, as ``epoch/<name>`` with step = the epoch's number as Keras prints it (1 = the first).
MLflow's run page groups charts by the part before "/"."""
from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np

EPOCH_GROUP = "epoch"


class EpochMetrics(keras.callbacks.Callback):
    """Calls ``sink(metrics, step=epoch)`` at the end of every epoch."""

    def __init__(self, n_train: int, sink: Callable[..., None]):
        super().__init__()
        self.n_train, self.sink = n_train, sink
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._t0
        metrics = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)}
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics["epoch_seconds"] = seconds
        metrics["images_per_second"] = self.n_train / max(seconds, 1e-9)
        self.sink({f"{EPOCH_GROUP}/{k}": v for k, v in metrics.items()}, step=epoch + 1)
