"""One worker among several on a study: its own sampler seed, and how it stops when told to.

Seeds. Every worker seeding its sampler with the study's seed makes them draw the same first
trials (a wasted trial per extra worker, at least). The worker that creates the study uses the seed
itself, so a study run by one worker with a fixed seed is reproducible exactly as before; every
worker that joins (or resumes) it derives its own seed from the study's seed, the number of trials
the study had when it joined and the worker's identity (host, PID namespace, pid), so no two
workers draw alike.

Stopping. SIGTERM (`kill`, a scheduler, `mlflow run`'s Ctrl-C) and SIGINT (Ctrl-C) become a
KeyboardInterrupt in the main thread (raised where library code cannot lose it:
`tracking.interrupts`): the running trial ends FAIL (Optuna tells it so; the
objective marks its MLflow run FAILED), and `tune` ends the parent run KILLED unless other workers
still run trials, for whom it stays RUNNING; then one line (`WorkerStopped`) and a non-zero exit.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from ..errors import UserError
from ..tracking import interrupts
from .leases import Leases, worker_identity


class WorkerStopped(UserError):
    """This worker was stopped by a signal; the message says what became of its trial and the parent."""


def joining_seed(seed: int, trials_at_join: int) -> int:
    """The sampler seed of a worker that joins a study: derived from the study's seed, its trial
    count at the join and this worker's identity (the module docstring says why)."""
    digest = hashlib.sha256(f"{seed}/{trials_at_join}/{worker_identity()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@contextlib.contextmanager
def stop_signals():
    """SIGTERM and SIGINT raise KeyboardInterrupt in the main thread (the first of them: a second one
    while this worker winds down is ignored); the previous handlers are back afterwards. Off the main
    thread (a library caller's thread) signals cannot be handled and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []

    def handler(signum, frame):
        if caught:
            return
        caught.append(signum)
        interrupts.interrupt(signal.Signals(signum).name, frame)  # raised where library code cannot lose it

    with interrupts.scope():
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def honour_stop(study, trial) -> None:
    """An Optuna callback: after each trial, the stop a signal asked for, if library code lost its
    KeyboardInterrupt (`tracking.interrupts`); the trial is told by then, and no lock is held."""
    interrupts.check()


@contextlib.contextmanager
def quiet_optuna():
    """Optuna's verbosity restored on leaving; `hush` (called when a trial is interrupted) stops
    Optuna logging the interrupted trial's traceback, which the one-line message replaces."""
    level = optuna.logging.get_verbosity()
    if not os.environ.get("FER_DEBUG"):  # our own line per trial says what Optuna's INFO lines would
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def hush() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def others_running(study) -> int:
    """How many trials other live (or not yet known dead) workers are running."""
    storage = study._storage
    if isinstance(storage, Leases):
        groups = storage.leases(study._study_id)
        return len(groups["alive"]) + len(groups["unknown"])
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if is_heartbeat_enabled(storage):
        stale = set(storage._get_stale_trial_ids(study._study_id))
        running = [t for t in running if t._trial_id not in stale]
    return len(running)


def stopped(study, parent: str, tracker, why: str, trial_number: int | None) -> WorkerStopped:
    """End the parent run KILLED if no other worker runs trials (else leave it RUNNING for them) and
    return the one-line error that says so. `trial_number`: the trial this worker was running."""
    others = others_running(study)
    trial = f"its trial {trial_number} failed (run FAILED)" if trial_number is not None else "no trial was running"
    if others:
        fate = f"parent run {parent} left RUNNING for the {others} trial(s) other workers are running"
    else:
        tracker.stop_parent(parent)
        fate = f"parent run {parent} KILLED"
    return WorkerStopped(f"study {study.study_name}: this worker was stopped ({why}): {trial}; {fate}; rerun the "
                         f"same command to resume the study")
