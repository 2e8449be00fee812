"""Leases: a heartbeat for any Optuna storage that lacks one, kept in the storage itself.

While a trial runs, Optuna's heartbeat thread calls `record_heartbeat` every `interval` seconds, which
writes the trial's lease (the worker's identity and the time) as a trial system attribute; before each
trial Optuna asks `_get_stale_trial_ids` and fails what it returns, calling the stale-trial callback
(the MLflow run marked FAILED, the trial retried with the same params). Only `set_trial_system_attr`
and `get_all_trials` are used, so it works wherever those do: the journal file (`journal`), and a
study reached through Optuna's gRPC storage proxy (`grpc_proxy`), which forwards no heartbeat of its
own. A trial is stale when the worker that runs it is on this machine (same host name and PID
namespace) and its process is gone — known at once — or when its lease has not changed for `grace`
seconds *of the observer's own clock*; it is alive when its process is seen, or its lease was seen to
change lately; in between, unknown. Comparing lease values, never the timestamps written by another
host, keeps clock skew between machines out of it; the price is that a worker has to watch a lease
for `grace` seconds before calling it stale (each worker watches the others' leases from its own
heartbeat thread, so that time passes while it trains).

A worker about to leave a study that is not done (`recover_or_wait`) waits until each other
worker's trial is alive by a renewal seen *since it began to wait* (at most an interval) or stale
(at most `grace`), and fails, requeues and runs the stale ones: a worker that died before that is
always noticed. Left: one on another machine that dies while the survivor leaves looks alive; the
next worker to start (or the same command rerun) retries its trial.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import warnings

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

LEASE = "fer:lease"  # trial system attribute: [worker identity, unix time of the last renewal]


def worker_identity() -> str:
    """host|pid namespace|pid. FER_WORKER_HOST overrides the host name where two machines share one
    (containers on the host network); the PID namespace tells containers on one host apart."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{os.environ.get('FER_WORKER_HOST') or socket.gethostname()}|{namespace}|{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Leases(BaseHeartbeat):
    """Optuna's heartbeat interface on trial leases (see the module docstring); a storage class mixes it
    in and calls `_init_leases` from its constructor."""

    def _init_leases(self, *, interval: int, grace: float, on_stale) -> None:
        self.interval, self.grace, self._on_stale = interval, grace, on_stale
        self.identity = worker_identity()
        self._seen: dict[int, tuple] = {}  # trial id → (lease, monotonic time it last changed, seen to change)
        self._seen_lock = threading.Lock()
        self._watched: set[int] = set()

    # -- Optuna's heartbeat interface ---------------------------------------------------------------
    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, LEASE, [self.identity, round(time.time(), 3)])
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another worker judged it stale and failed it: nothing left to renew
        try:  # watch the other workers' leases while this one trains (an aid only: never fatal)
            for study_id in list(self._watched):
                self.leases(study_id)
        except Exception:
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return [t._trial_id for t in self.leases(study_id)["stale"]]

    def get_heartbeat_interval(self) -> int:
        return self.interval

    def get_heartbeat_stale_trial_callback(self):
        return self._on_stale

    # -- the other workers' trials ------------------------------------------------------------------
    def leases(self, study_id: int, renewed_since: float | None = None) -> dict[str, list]:
        """The RUNNING trials of other workers, as "stale" (lease unchanged for `grace`, or process
        gone from this host), "alive" (process on this host, or lease seen renewed since the monotonic
        time `renewed_since`, by default within two intervals) or "unknown" (neither yet)."""
        self._watched.add(study_id)
        groups = {"alive": [], "stale": [], "unknown": []}
        here = self.identity.rsplit("|", 1)[0]
        now = time.monotonic()
        since = now - 2 * self.interval if renewed_since is None else renewed_since
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            lease = trial.system_attrs.get(LEASE)
            who = lease[0] if lease else ""
            if who == self.identity:
                continue  # this worker's own trial
            with self._seen_lock:
                old = self._seen.get(trial._trial_id)
                if old is None or old[0] != lease:
                    old = self._seen[trial._trial_id] = (lease, now, old is not None)
            place, _, pid = who.rpartition("|")
            if now - old[1] > self.grace:  # also a process here that is hung, or a pid now someone else's
                kind = "stale"
            elif place == here and pid.isdigit():
                kind = "alive" if _alive(int(pid)) else "stale"
            else:
                kind = "alive" if old[2] and old[1] >= since else "unknown"
            groups[kind].append(trial)
        return groups


def recover_or_wait(study, n_trials: int, deadline: float | None) -> bool:
    """Before a worker leaves a study that is not done: wait until each other worker's RUNNING trial
    is alive (renewed since this call began: its worker finishes it) or stale, fail and requeue the
    stale ones, and say whether there is work for this worker (a requeued or waiting trial, or a free
    slot)."""
    storage, began = study._storage, time.monotonic()
    if not isinstance(storage, Leases):
        return False
    while deadline is None or time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=False)
        if sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= n_trials:
            return False
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        groups = storage.leases(study._study_id, renewed_since=began)
        if groups["stale"]:
            with warnings.catch_warnings():  # "experimental" in Optuna's wording; Optuna calls it itself
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            return True
        if not groups["unknown"]:
            busy = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) for t in trials)
            return busy < n_trials
        time.sleep(max(0.5, storage.interval / 4))
    return False
