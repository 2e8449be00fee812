"""Optuna's side of a trial: the sampler and pruner made from their registry names, the majority-class
floor every pruner gets, and the Keras callback that reports each epoch to the trial."""
from __future__ import annotations

import keras
import optuna

from ..config import ConfigError
from .registry import FLOOR_WARMUP, PRUNERS, SAMPLERS


def make_sampler(name: str, seed: int):
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{name}': choose one of {', '.join(SAMPLERS)}")
    return getattr(optuna.samplers, SAMPLERS[name])(seed=seed)


def make_pruner(name: str, *, floor: float, epochs: int):
    """The pruner `name`, behind the majority-class floor (`FloorOr`) unless it is `none`."""
    if name not in PRUNERS:
        raise ConfigError(f"unknown pruner '{name}': choose one of {', '.join(PRUNERS)}")
    cls, kwargs = PRUNERS[name]
    pruner = getattr(optuna.pruners, cls)(**kwargs)
    return pruner if name == "none" else FloorOr(pruner, floor, epochs)


class FloorOr(optuna.pruners.BasePruner):
    """The chosen pruner, plus a floor: a trial still no better than always predicting the majority
    class after FLOOR_WARMUP epochs has learned nothing, and is pruned. (Median and successive
    halving never prune ties, and FER networks often sit exactly at that rate when mis-tuned.)"""

    def __init__(self, pruner, floor: float, epochs: int):
        self.pruner, self.last_step = pruner, epochs - 1
        self.floor = optuna.pruners.ThresholdPruner(lower=floor, n_warmup_steps=FLOOR_WARMUP - 1)

    def prune(self, study, trial) -> bool:
        # At the last epoch there is nothing left to save: let the trial complete with its value.
        if trial.last_step is not None and trial.last_step >= self.last_step:
            return self.pruner.prune(study, trial)
        return self.floor.prune(study, trial) or self.pruner.prune(study, trial)


class KerasPruning(keras.callbacks.Callback):
    """Reports val_accuracy each epoch; raises TrialPruned when the pruner says so. The trial's run id
    comes from the tracker the trial trains with."""

    def __init__(self, trial, tracker):
        super().__init__()
        self.trial, self.tracker = trial, tracker

    def on_train_begin(self, logs=None):
        self.trial.set_user_attr("mlflow_run_id", self.tracker.run_id)

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_accuracy"]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")
