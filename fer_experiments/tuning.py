"""`fer-exp tune`: an Optuna study over the one trainer, on one machine or many.

The objective samples a config and calls `training.train`; the trainer sees the trial only
through `KerasPruning`. Workers sharing `study` + `storage` cooperate on one study and one MLflow
parent run (its id is a study user attribute).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass

import keras
import optuna
from optuna.trial import TrialState

from . import search_space, tracking, training
from .tracking import studies as study_tracking
from .tracking import tags as T
from . import data as fer_data
from .config import ConfigError, TrainConfig
from .errors import UserError
from .study_storage import mask_url, open_storage, requeue_dead_local_trials
from .study_plots import study_figures

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SAMPLERS = {"tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
            "random": lambda seed: optuna.samplers.RandomSampler(seed=seed)}
# The first 4 trials always finish (a pruner needs company: with 2-3 start-up trials a 6-trial study
# pruned a trial that ended 2 points from the best), and no trial is judged before its 4th epoch (the
# seed CNN often needs 3-4 epochs to leave the majority class). The default, percentile, prunes only
# trials in the bottom quarter at the same epoch (median pruned 3 of the README's first 6 trials).
PRUNERS = {"percentile": lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=4, n_warmup_steps=3),
           "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3),
           "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
           "none": lambda: optuna.pruners.NopPruner()}
FLOOR_WARMUP = 5  # epochs a trial gets to beat the majority-class rate before the floor applies
MAX_CONSECUTIVE_FAILURES = 3  # failed trials in a row after which a worker stops: the cause is not the settings


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


@dataclass
class TuneSettings:
    base: TrainConfig               # model, data, epochs per trial … (searched keys are overridden)
    n_trials: int = 20              # the study's target of finished (complete + pruned) trials
    timeout: float = 0              # seconds for this worker; 0 = none
    study: str = ""                 # "" → fer-<model>-<dataset>
    storage: str = ""               # "" → journal file under mlruns/; or any SQLAlchemy URL
    sampler: str = "tpe"
    pruner: str = "percentile"
    search_space: str = ""          # "" → experiments/search_spaces/<family>.yaml
    experiment: str = ""            # MLflow experiment; "" → fer2013 / fer2013-synthetic


class KerasPruning(keras.callbacks.Callback):
    """Reports val_accuracy each epoch; raises TrialPruned when the pruner says so."""

    def __init__(self, trial):
        super().__init__()
        self.trial = trial

    def on_train_begin(self, logs=None):
        self.trial.set_user_attr("mlflow_run_id", tracking.current_run_id())

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_accuracy"]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


class SurplusTrial(Exception):
    """Two workers asked for the last trial at once: the later one stands down."""


def validate(s: TuneSettings) -> dict:
    if s.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{s.sampler}': choose one of {', '.join(SAMPLERS)}")
    if s.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner '{s.pruner}': choose one of {', '.join(PRUNERS)}")
    if s.n_trials < 1 or s.timeout < 0:
        raise ConfigError(f"n_trials={s.n_trials} / timeout={s.timeout} out of range: n_trials >= 1, timeout >= 0")
    s.base.validate()
    return search_space.load(s.base.model, s.search_space or None)


def tune(s: TuneSettings, echo=print):
    space = validate(s)
    ds = fer_data.load_dataset(s.base.data, val_fraction=s.base.val_fraction, seed=s.base.seed)  # decode once
    name = s.study or f"fer-{s.base.model}-{'synthetic' if ds.synthetic else ds.name}"
    storage = open_storage(s.storage, on_fail=_fail_trial_run)
    tracking.check_store()  # before the study exists: a refused worker must not leave a parentless study
    floor = ds.majority_rate("val") + 0.005  # a hair above "always the majority class"
    study, parent = _open_study(s, name, storage, ds.synthetic, floor, echo)
    requeue_dead_local_trials(study, on_fail=_fail_trial_run)
    objective = _objective(s, space, parent, study)
    remaining = s.n_trials - len(study.get_trials(states=FINISHED))
    echo(f"study {name} on {mask_url(s.storage) or 'journal file'}: {s.n_trials - remaining} of "
         f"{s.n_trials} trials already finished; MLflow parent run {parent}")
    failures = FailureGuard()
    if remaining > 0:
        stop = optuna.study.MaxTrialsCallback(s.n_trials, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
        study.optimize(objective, timeout=s.timeout or None, callbacks=[stop, _progress(s, echo), failures],
                       catch=(Exception,), gc_after_trial=True)
    done = len(study.get_trials(states=FINISHED)) >= s.n_trials
    best = _best(study)
    champion = study_tracking.summarize(parent, study, best, study_figures(study),
                                        study.trials_dataframe().to_csv(index=False), done=done, champion=name)
    if champion:
        echo(f"study {name} done: best trial {best.number} (validation accuracy {best.value:.4f}) registered as {champion}")
    failures.raise_if_stopped(name)
    return study, parent, best


class TuneError(UserError):
    """A study that cannot go on (every trial fails the same way); the message says why."""


class FailureGuard:
    """Stops this worker after MAX_CONSECUTIVE_FAILURES failed trials in a row: trials that all fail
    (a wrong store, a broken environment) would otherwise be retried until n_trials *finish*."""

    def __init__(self):
        self.streak, self.last_error, self.stopped = 0, "", False

    def __call__(self, study, trial):
        if trial.state != TrialState.FAIL:
            self.streak = 0
            return
        self.streak += 1
        self.last_error = trial.user_attrs.get("error", "see the trial's run or the log above")
        if self.streak >= MAX_CONSECUTIVE_FAILURES:
            self.stopped = True
            study.stop()

    def raise_if_stopped(self, name: str) -> None:
        if self.stopped:
            raise TuneError(f"study {name} stopped after {self.streak} failed trials in a row (last: {self.last_error}): "
                            f"fix that cause, then rerun the same command to resume the study")


def _open_study(s: TuneSettings, name: str, storage, synthetic: bool, floor: float, echo=print):
    sampler = SAMPLERS[s.sampler](s.base.seed)
    pruner = PRUNERS[s.pruner]() if s.pruner == "none" else FloorOr(PRUNERS[s.pruner](), floor, s.base.epochs)
    try:  # creating the study is atomic in every storage: exactly one worker wins and makes the parent
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ConfigError(f"study '{name}' exists with direction {study.direction.name.lower()}: "
                              f"choose another --study name (fer-exp tune maximises validation accuracy)") from None
        parent = _wait_for_parent(study)
        if study_tracking.parent_in_store(parent):
            study_tracking.attach_worker(parent, name)
            return study, parent
        # The study's storage outlived the tracking store its parent was in: record under a new parent.
        fresh = _new_parent(s, name, synthetic)
        echo(f"study {name}: its MLflow parent run {parent} is not in {tracking.tracking_uri()}; "
             f"its trials are recorded under a new parent run {fresh}")
        study.set_user_attr("mlflow_parent_run_id", fresh)
        return study, fresh
    parent = _new_parent(s, name, synthetic)
    study.set_user_attr("mlflow_parent_run_id", parent)
    return study, parent


def _new_parent(s: TuneSettings, name: str, synthetic: bool) -> str:
    tags = {T.STUDY_NAME: name, T.SAMPLER: s.sampler, T.PRUNER: s.pruner,
            T.STORAGE: mask_url(s.storage) or "journal file", T.SYNTHETIC: str(synthetic).lower(), T.RUN_KIND: "study"}
    params = {"model": s.base.model, "data": s.base.data, "n_trials": s.n_trials, "epochs_per_trial": s.base.epochs,
              "sampler": s.sampler, "pruner": s.pruner, "seed": s.base.seed, "study": name}
    experiment = s.experiment or tracking.experiment_name_for(synthetic)
    return study_tracking.create_parent(experiment, name, tags, params)


def _wait_for_parent(study, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        parent = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs.get(
            "mlflow_parent_run_id")
        if parent:
            return parent
        time.sleep(1)
    raise ConfigError(f"study '{study.study_name}' has no MLflow parent run after {seconds:.0f} s: "
                      f"its creator died early; tune under a new --study name")


def _objective(s: TuneSettings, space: dict, parent: str, study):
    def objective(trial):
        _guard_surplus(study, trial, s.n_trials)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        cfg = dataclasses.replace(s.base, **search_space.sample(trial, space)).validate()
        pruning = KerasPruning(trial)
        tags = {T.STUDY_NAME: study.study_name, T.TRIAL_NUMBER: str(trial.number)}
        try:
            result = training.train(cfg, callbacks=[pruning], parent_run_id=parent, extra_tags=tags, verbose=0)
        except optuna.TrialPruned:
            study_tracking.mark_trial_run(trial.user_attrs.get("mlflow_run_id"), "PRUNED")
            raise
        except BaseException as exc:
            trial.set_user_attr("error", (f"{type(exc).__name__}: {exc}".splitlines() or ["?"])[0][:300])
            study_tracking.mark_trial_run(trial.user_attrs.get("mlflow_run_id"), "FAIL")
            raise
        trial.set_user_attr("model_uri", result.model_uri)
        trial.set_user_attr("test_accuracy", result.metrics.get("test_accuracy"))  # reported, never selected on
        study_tracking.mark_trial_run(result.run_id, "COMPLETE")
        return result.metrics["best_val_accuracy"]
    return objective


def _guard_surplus(study, trial, n_trials: int) -> None:
    before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL]
    if len(before) >= n_trials:
        study.stop()
        raise SurplusTrial(f"trial {trial.number} is beyond n_trials={n_trials}")


def _fail_trial_run(study, trial) -> None:
    study_tracking.mark_trial_run(trial.user_attrs.get("mlflow_run_id"), "FAIL")


def _best(study):
    try:
        return study.best_trial
    except ValueError:
        return None


def _progress(s: TuneSettings, echo):
    def callback(study, trial):
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        best = _best(study)
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        best_txt = f"{best.value:.4f} (trial {best.number})" if best else "-"
        minutes = (trial.duration.total_seconds() / 60) if trial.duration else 0.0
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        echo(f"trial {trial.number} {trial.state.name.lower():8s} value {value} {minutes:.1f} min [{params}]"
             f" | finished {finished}/{s.n_trials} | best {best_txt} | pruned {pruned}")
    return callback
