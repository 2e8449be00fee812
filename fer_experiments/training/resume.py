"""Early stopping and learning-rate plateaus whose state survives a killed run.

`keras.callbacks.BackupAndRestore` brings back the weights and the epoch, but EarlyStopping and
ReduceLROnPlateau start afresh in `on_train_begin`: after a resume the "best" weights restored at the
end would be the best *since the kill*, and the wait counters and the reduced learning rate would be
lost. These subclasses write their state (and the best weights) to a folder after every epoch and
read it back when training begins again. Pure Keras + NumPy: no tracking here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np


class _Persistent:
    """Keeps `KEYS` of the callback in `<state_dir>/<name>.json`, written atomically."""

    KEYS: tuple[str, ...] = ()

    def _state_file(self) -> Path:
        return Path(self.state_dir) / f"{type(self).__name__}.json"

    def _save_state(self, **extra) -> None:
        state = {k: _plain(getattr(self, k)) for k in self.KEYS} | extra
        _atomic_write(self._state_file(), lambda path: path.write_text(json.dumps(state)))

    def _load_state(self) -> dict | None:
        path = self._state_file()
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        for key in self.KEYS:
            setattr(self, key, state[key])
        return state


class ResumableEarlyStopping(_Persistent, keras.callbacks.EarlyStopping):
    """EarlyStopping whose best value, best epoch, wait counter and best weights survive a kill.
    `announce`: print one line when training ends on it, or ends on weights other than the last
    epoch's (`summary`), instead of Keras's two (its `verbose`)."""

    KEYS = ("best", "best_epoch", "wait")

    def __init__(self, state_dir: str | Path, announce: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.state_dir = Path(state_dir)
        self.announce = announce
        self.last_epoch = -1

    @property
    def _weights_file(self) -> Path:
        return self.state_dir / "best_weights.npz"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._load_state() and self.restore_best_weights and self._weights_file.is_file():
            with np.load(self._weights_file) as saved:
                self.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.last_epoch = epoch
        if self.restore_best_weights and self.best_epoch == epoch and self.best_weights is not None:
            _atomic_write(self._weights_file, lambda path: np.savez(path, *self.best_weights), suffix=".npz")
        self._save_state()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self.announce and (line := self.summary()):
            print(line, flush=True)

    def summary(self) -> str:
        """E.g. "early stopping after epoch 14: val_accuracy has not improved for 8 epochs; restoring
        epoch 6's weights (val_accuracy 0.6123)", or "after epoch 30: restoring epoch 26's weights, the best
        (val_accuracy 0.6123)"; "" where the last epoch was the best."""
        restoring = (self.restore_best_weights and self.best_weights is not None and self.best is not None
                     and self.last_epoch >= 0 and (self.stopped_epoch > 0 or self.best_epoch != self.last_epoch))
        weights = f"epoch {self.best_epoch + 1}'s weights"
        value = f"({self.monitor} {self.best:.4f})" if restoring else ""
        if self.stopped_epoch > 0:
            return (f"early stopping after epoch {self.stopped_epoch + 1}: {self.monitor} has not improved for "
                    f"{self.wait} epochs" + (f"; restoring {weights} {value}" if restoring else ""))
        return f"after epoch {self.last_epoch + 1}: restoring {weights}, the best {value}" if restoring else ""


class ResumablePlateau(_Persistent, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose best value, counters and current learning rate survive a kill."""

    KEYS = ("best", "wait", "cooldown_counter")

    def __init__(self, state_dir: str | Path, **kwargs):
        super().__init__(**kwargs)
        self.state_dir = Path(state_dir)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = self._load_state()
        if state:
            self.model.optimizer.learning_rate = state["learning_rate"]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._save_state(learning_rate=lr)


class TrainedWeights(keras.callbacks.Callback):
    """The trained model's weights, written when `fit` ends: a run killed during its end-of-run work
    (evaluation, logging the model) resumes from here without training again."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    def on_train_end(self, logs=None):
        _atomic_write(self.path, self.model.save_weights, suffix=".weights.h5")

    def restore(self, model: keras.Model) -> bool:
        if not self.path.is_file():
            return False
        model.load_weights(self.path)
        return True


def _plain(value):
    """JSON-safe: NumPy scalars and ±inf (EarlyStopping's initial best) as Python floats."""
    value = value.item() if hasattr(value, "item") else value
    return float(value) if isinstance(value, float) else value


def _atomic_write(path: Path, write, suffix: str = ".tmp") -> None:
    """Write through a temporary file and rename, so a kill mid-write leaves the old state intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial" + suffix)
    write(tmp)
    os.replace(tmp, path)
