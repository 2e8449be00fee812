"""Per-epoch metrics for any tracker (no MLflow here): Keras's logs plus learning rate, seconds and
images/s, as ``epoch/<name>`` with step = the epoch's number as Keras prints it (1 = the first).
MLflow's run page groups charts by the part before "/". A stop signal during `fit` is raised before
the next batch (`interrupts`)."""
from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import keras
import numpy as np

from . import interrupts

EPOCH_GROUP = "epoch"


class EpochMetrics(keras.callbacks.Callback):
    """Calls ``sink(metrics, step=epoch)`` at the end of every epoch."""

    def __init__(self, n_train: int, sink: Callable[..., None]):
        super().__init__()
        self.n_train, self.sink = n_train, sink
        self._t0 = 0.0

    # A stop signal during `fit` is raised before the next batch (`interrupts`): in the main thread,
    # between two steps, where no tracing, finaliser or library lock can lose it. (Begin hooks keep
    # Keras's asynchronous dispatch of batch-end hooks.)
    def on_train_begin(self, logs=None):
        interrupts.defer_inside(inspect.unwrap(type(self.model).fit).__code__)

    def on_train_batch_begin(self, batch, logs=None):
        interrupts.check()

    def on_test_batch_begin(self, batch, logs=None):
        interrupts.check()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._t0
        metrics = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)}
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics["epoch_seconds"] = seconds
        metrics["images_per_second"] = self.n_train / max(seconds, 1e-9)
        self.sink({f"{EPOCH_GROUP}/{k}": v for k, v in metrics.items()}, step=epoch + 1)
