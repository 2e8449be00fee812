"""`fer-exp tune`: an Optuna study over the one trainer, on one machine or many.

The objective samples a config and calls `training.train`; the trainer sees the trial only
through `KerasPruning`. Workers sharing `study` + `storage` cooperate on one study and one MLflow
parent run (its id is a study user attribute); a worker does not leave a study that is not done
while a dead worker's trial waits to be retried (`journal.recover_or_wait`), and stops cleanly on
SIGTERM / SIGINT (`workers`). The worker that sees the study done confirms its top trials with more
seeds (`confirmation`) and registers the champion.
"""
from __future__ import annotations

import functools
import os
import socket
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .. import data as fer_data
from .. import training
from ..config import ConfigError
from ..errors import UserError
from ..tracking import MlflowTracker
from ..tracking import experiment_name_for as tracking_experiment
from ..tracking import tags as T
from . import confirmation, search_space
from .leases import recover_or_wait
from .plots import study_figures
from .pruning import KerasPruning, make_pruner, make_sampler
from .settings import TuneSettings
from .storage import MAX_RETRY, mask_url, open_storage
from .workers import honour_stop, hush, joining_seed, quiet_optuna, stop_signals, stopped

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 3  # failed trials in a row after which a worker stops: the cause is not the settings
class SurplusTrial(Exception):
    """Two workers asked for the last trial at once: the later one stands down."""


def validate(s: TuneSettings) -> dict:
    make_sampler(s.sampler, s.base.seed)  # an unknown name is a one-line ConfigError
    make_pruner(s.pruner, floor=0.0, epochs=s.base.epochs)
    if s.n_trials < 1 or s.timeout < 0 or s.confirm_top < 0 or s.confirm_seeds < 0:
        raise ConfigError(f"n_trials={s.n_trials} / timeout={s.timeout} / confirm_top={s.confirm_top} / confirm_seeds="
                          f"{s.confirm_seeds} out of range: n_trials >= 1, the others >= 0")
    s.base.validate()
    return search_space.load(s.base.model, s.search_space or None)


def tune(s: TuneSettings, echo=print, tracker=None):
    space = validate(s)
    tracker = tracker or MlflowTracker()
    with stop_signals(), quiet_optuna():
        ds = fer_data.load_dataset(s.base.data, val_fraction=s.base.val_fraction, seed=s.base.seed)  # decode once
        name = s.study or f"fer-{s.base.model}-{'synthetic' if ds.synthetic else ds.name}"
        storage = open_storage(s.storage, on_fail=functools.partial(_fail_trial_run, tracker, echo))
        tracker.check_store()  # before the study exists: a refused worker must not leave a parentless study
        floor = ds.majority_rate("val") + 0.005  # a hair above "always the majority class"
        study, parent = _open_study(s, name, storage, ds.synthetic, floor, tracker, echo)
        objective = _objective(s, space, parent, study, tracker)
        link = tracker.study_link(parent, list(space))
        echo(f"study {name} on {mask_url(s.storage) or 'journal file'}: {len(study.get_trials(states=FINISHED))} of "
             f"{s.n_trials} trials already finished; MLflow parent run {parent}; its trials in `mlflow ui`: {link}")
        failures = FailureGuard()
        try:
            _optimize(s, study, objective, [_progress(s, echo), failures, honour_stop], failures)
            done = len(study.get_trials(states=FINISHED)) >= s.n_trials
            confirmed = confirmation.confirm(s, study, parent, tracker, echo) if done else None
            best = confirmed.champion if confirmed else _best(study)  # the champion; Optuna's best_trial stays its own
            champion = tracker.summarize(parent, study, best, study_figures(study),
                                         study.trials_dataframe().to_csv(index=False), done=done, champion=name)
        except KeyboardInterrupt as exc:
            raise stopped(study, parent, tracker, str(exc) or "SIGINT", objective.trial) from None
    if champion:
        echo(f"study {name} done: champion trial {best.number} ({confirmation.words(best, confirmed)}) "
             f"registered as {champion}")
    echo(f"the study's trials in `mlflow ui`: {link}")
    failures.raise_if_stopped(name)
    echo(confirmation.result_line(best, confirmed, parent))
    return study, parent, best


def _optimize(s: TuneSettings, study, objective, callbacks: list, failures) -> None:
    """Trials until the study has n_trials finished, this worker's timeout passes or its trials keep
    failing. Optuna stops a worker once finished + running trials reach n_trials; before it leaves,
    the other workers' running trials are waited on until each is known alive or stale, and a stale
    one (its worker died) is failed, requeued and run here."""
    deadline = time.monotonic() + s.timeout if s.timeout else None
    stop = optuna.study.MaxTrialsCallback(s.n_trials, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
    while len(study.get_trials(states=FINISHED)) < s.n_trials:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        study.optimize(objective, timeout=left, callbacks=[stop, *callbacks], catch=(Exception,), gc_after_trial=True)
        if failures.stopped or not recover_or_wait(study, s.n_trials, deadline):
            return


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


def _open_study(s: TuneSettings, name: str, storage, synthetic: bool, floor: float, tracker, echo=print):
    pruner = make_pruner(s.pruner, floor=floor, epochs=s.base.epochs)
    try:  # creating the study is atomic in every storage: exactly one worker wins and makes the parent
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=make_sampler(s.sampler, s.base.seed), pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        # A joining worker draws from its own seed (`workers.joining_seed`): the creator's is the study's.
        study.sampler = make_sampler(s.sampler, joining_seed(s.base.seed, len(study.get_trials(deepcopy=False))))
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ConfigError(f"study '{name}' exists with direction {study.direction.name.lower()}: "
                              f"choose another --study name (fer-exp tune maximises validation accuracy)") from None
        parent = _wait_for_parent(study)
        if tracker.parent_in_store(parent):
            tracker.attach_worker(parent, name)
            return study, parent
        # The study's storage outlived the tracking store its parent was in: record under a new parent.
        fresh = _new_parent(s, name, synthetic, tracker)
        echo(f"study {name}: its MLflow parent run {parent} is not in {tracker.tracking_uri()}; "
             f"its trials are recorded under a new parent run {fresh}")
        study.set_user_attr("mlflow_parent_run_id", fresh)
        return study, fresh
    parent = _new_parent(s, name, synthetic, tracker)
    study.set_user_attr("mlflow_parent_run_id", parent)
    return study, parent


def _new_parent(s: TuneSettings, name: str, synthetic: bool, tracker) -> str:
    tags = {T.STUDY_NAME: name, T.SAMPLER: s.sampler, T.PRUNER: s.pruner,
            T.STORAGE: mask_url(s.storage) or "journal file", T.SYNTHETIC: str(synthetic).lower(), T.RUN_KIND: "study"}
    space = s.search_space or str(search_space.default_file(s.base.model))
    params = {"model": s.base.model, "data": s.base.data, "n_trials": s.n_trials, "epochs_per_trial": s.base.epochs,
              "sampler": s.sampler, "pruner": s.pruner, "seed": s.base.seed, "study": name,
              "storage": tags[T.STORAGE], "search_space": space}
    experiment = s.experiment or tracking_experiment(synthetic)
    data = fer_data.data_words(s.base.data, synthetic)
    note = (f"Optuna study `{name}`: {s.n_trials} trials of `{s.base.model}` on {data}, {s.base.epochs} epochs each "
            f"(preset and fixed settings as in each trial's params), {s.sampler} sampler, {s.pruner} pruner, space "
            f"{Path(space).name}, storage {tags[T.STORAGE]}. Each trial is a child run; the objective is its "
            f"validation_accuracy (the float32 model's). This run carries the champion's figures: the best trial, or, "
            f"with the top {s.confirm_top} trained with {s.confirm_seeds} more seeds each (study/confirmation.csv), the "
            f"best mean over seeds; test is reported, never selected on.")
    return tracker.create_parent(experiment, name, tags, params, description=note)


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


def _objective(s: TuneSettings, space: dict, parent: str, study, tracker):
    def objective(trial):
        objective.trial = trial.number  # the trial a stopped worker reports as failed
        _guard_surplus(study, trial, s.n_trials)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        cfg = search_space.apply(s.base, search_space.sample(trial, space))
        tags = {T.STUDY_NAME: study.study_name, T.TRIAL_NUMBER: str(trial.number)}
        try:
            result = training.train(cfg, callbacks=[KerasPruning(trial, tracker)], parent_run_id=parent,
                                    extra_tags=tags, verbose=0, tracker=tracker)
        except optuna.TrialPruned:
            tracker.mark_trial_run(trial.user_attrs.get("mlflow_run_id"), "PRUNED")
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                hush()  # the worker's one-line message replaces Optuna's traceback of this trial
            trial.set_user_attr("error", (f"{type(exc).__name__}: {exc}".splitlines() or ["?"])[0][:300])
            tracker.mark_trial_run(trial.user_attrs.get("mlflow_run_id"), "FAIL")
            raise
        trial.set_user_attr("model_uri", result.model_uri)
        trial.set_user_attr("test_accuracy", result.metrics.get("test_accuracy"))  # reported, never selected on
        tracker.mark_trial_run(result.run_id, "COMPLETE")
        objective.trial = None
        # The figure the trial's run and model record: the float32 model's evaluation of the selected
        # weights (the in-fit epoch/val_accuracy is mixed precision's and only steers pruning).
        return result.metrics["validation_accuracy"]
    objective.trial = None
    return objective


def _guard_surplus(study, trial, n_trials: int) -> None:
    before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL]
    if len(before) >= n_trials:
        study.stop()
        raise SurplusTrial(f"trial {trial.number} is beyond n_trials={n_trials}")


def _fail_trial_run(tracker, echo, study, trial) -> None:
    """A dead worker's trial, failed by the storage's heartbeat check (its retry is queued next)."""
    tracker.mark_trial_run(trial.user_attrs.get("mlflow_run_id"), "FAIL")
    echo(f"trial {trial.number} failed: its worker ({trial.user_attrs.get('worker', '?')}) stopped sending "
         f"heartbeats; its run is marked FAILED and the trial queued again with the same params "
         f"(at most {MAX_RETRY} retries)")


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
