"""Journal-file studies that survive crashes: real Optuna, real journal files, the real MLflow SQLite
store of the `store` fixture, and real worker processes killed with SIGKILL / SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA, all_runs
from optuna.trial import TrialState
from test_tuning import children_of, settings

from fer_experiments.cli import main
from fer_experiments.studies import tuning
from fer_experiments.studies.journal import LEASE, LeasedJournalStorage, RepairingFileBackend, worker_identity
from fer_experiments.studies.storage import _retry_and_record, open_storage
from fer_experiments.tracking import MlflowTracker

FAST = {"FER_HEARTBEAT_S": "1"}  # leases renewed every second, stale after 3 s
DUMP = {"PYTHONFAULTHANDLER": "1"}  # SIGABRT makes a worker print every thread's stack (`_communicate`)


def _read(journal, name: str):
    """The study as a fresh reader sees it (Optuna's own backend: what any worker would read)."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=name, storage=storage)


def _cut_last_line(journal, keep_bytes_of_it: int = 25) -> None:
    data = journal.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    journal.write_bytes(data[:start + keep_bytes_of_it])  # a crash while the last record was written


def test_a_cut_last_line_is_cut_off_once_with_a_warning_and_a_backup(tmp_path, capfd):
    journal = tmp_path / "study.log"
    study = optuna.create_study(study_name="cut", storage=open_storage(f"journal:{journal}", on_fail=None))
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    _cut_last_line(journal)  # the tell's COMPLETE record, cut: no reader has applied it
    cut = journal.read_bytes()
    capfd.readouterr()
    again = optuna.load_study(study_name="cut", storage=open_storage(f"journal:{journal}", on_fail=None))
    for _ in range(2):  # two writes: the second would make a first write onto the partial line unreadable
        again.tell(again.ask(), 0.7)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: study journal {journal} ended in a line cut short"), err
    assert (tmp_path / "study.log.bak").read_bytes() == cut
    trials = _read(journal, "cut").trials  # every record after the repair is readable
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.COMPLETE, TrialState.COMPLETE]
    assert journal.read_bytes().endswith(b"\n")


def test_a_cut_journal_leaves_no_orphan_parent(store, tmp_path):
    # The crash cut the last record of an older study; a new study's worker opens the same journal.
    journal = tmp_path / "study.log"
    optuna.create_study(study_name="old", storage=open_storage(f"journal:{journal}", on_fail=None)).ask()
    _cut_last_line(journal)
    s = settings(study="new", storage=f"journal:{journal}")
    tracker = MlflowTracker()
    study, parent = tuning._open_study(s, "new", open_storage(s.storage, on_fail=None), True, 0.2, tracker)
    assert _read(journal, "new").user_attrs["mlflow_parent_run_id"] == parent  # the study and its parent, on record
    assert [r.info.run_id for r in all_runs()] == [parent]


def test_a_garbage_line_mid_journal_is_one_line_naming_file_and_line(store, tmp_path):
    journal = tmp_path / "study.log"
    study = optuna.create_study(study_name="g", storage=open_storage(f"journal:{journal}", on_fail=None))
    study.enqueue_trial({"dropout": 0.1})
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + "}{ not a record\n" + "".join(lines[1:]))
    result = CliRunner().invoke(main, ["tune", "--data", SMALL_DATA, "--study", "g", "--storage", f"journal:{journal}"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()], result.output
    assert f"study journal {journal} is corrupt at line 2" in result.output and "head -n 1" in result.output
    assert not all_runs()


def test_leases_tell_dead_workers_from_live_ones(tmp_path):
    journal = tmp_path / "study.log"
    failed = []
    storage = LeasedJournalStorage(RepairingFileBackend(str(journal)), interval=0.2, grace=0.6,
                                   on_stale=_retry_and_record(lambda study, trial: failed.append(trial.number)))
    study = optuna.create_study(study_name="leases", storage=storage)
    here = worker_identity().rsplit("|", 1)[0]
    dead_pid = int(open("/proc/sys/kernel/pid_max").read()) + 1  # no process can have it
    alive_pid = os.getppid()  # a process that runs, and is not this one
    owners = {"dead here": f"{here}|{dead_pid}", "renewing here": f"{here}|{alive_pid}",
              "hung here": f"{here}|{alive_pid}", "silent elsewhere": "elsewhere|ns|7",
              "renewing elsewhere": "elsewhere|ns|8"}
    trials = {}  # what → trial number, which is also its id (the journal's only study)
    for what, who in owners.items():
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        storage.set_trial_system_attr(trial._trial_id, LEASE, [who, time.time()])
        trials[what] = trial.number

    def kinds():
        return {what: next(k for k, ts in storage.leases(study._study_id).items()
                           if trials[what] in [t.number for t in ts]) for what in trials}

    assert kinds() == {"dead here": "stale", "renewing here": "alive", "hung here": "alive",
                       "silent elsewhere": "unknown", "renewing elsewhere": "unknown"}
    for _ in range(3):  # live workers renew; a dead or hung one's lease stays as it was
        time.sleep(0.3)
        for what in ("renewing here", "renewing elsewhere"):
            storage.set_trial_system_attr(trials[what], LEASE, [owners[what], time.time()])
        seen = kinds()
    assert seen == {"dead here": "stale", "renewing here": "alive", "hung here": "stale",
                    "silent elsewhere": "stale", "renewing elsewhere": "alive"}
    optuna.storages.fail_stale_trials(study)  # what Optuna runs before each trial of a heartbeat storage
    by_number = {t.number: t for t in study.trials}
    assert sorted(failed) == sorted(trials[what] for what in ("dead here", "hung here", "silent elsewhere"))
    retries = [t for t in study.trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted(failed)
    for retry in retries:  # the same params, and no lease of the dead worker's to mislead the next check
        assert retry.params == by_number[retry.system_attrs["failed_trial"]].params and LEASE not in retry.system_attrs


def test_joining_workers_draw_their_own_first_trial(store, tmp_path):
    # Two workers open one new study at once: the creator keeps the seed, the joiner derives its own.
    s = settings(study="seeds", storage=f"journal:{tmp_path / 'study.log'}", sampler="tpe")
    space = tuning.search_space.load(s.base.model, None)
    tracker = MlflowTracker()
    first, _ = tuning._open_study(s, "seeds", open_storage(s.storage, on_fail=None), True, 0.2, tracker)
    second, _ = tuning._open_study(s, "seeds", open_storage(s.storage, on_fail=None), True, 0.2, tracker)
    drawn = [tuning.search_space.sample(study.ask(), space) for study in (first, second)]
    assert drawn[0] != drawn[1], drawn
    # One worker with a fixed seed stays reproducible: a fresh study draws what the first did.
    third, _ = tuning._open_study(settings(study="again", storage=s.storage, sampler="tpe"), "again",
                                  open_storage(s.storage, on_fail=None), True, 0.2, tracker)
    assert tuning.search_space.sample(third.ask(), space) == drawn[0]


def _worker(journal, study: str, n_trials: int, epochs: int, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fer_experiments.cli", "tune", "--model", "custom", "--data", SMALL_DATA,
           "--epochs", str(epochs), "--limit", "150", "--n_trials", str(n_trials), "--study", study,
           "--storage", f"journal:{journal}", "--sampler", "random", "--pruner", "none", "--diagnostics", "false",
           "--confirm-top", "0"]
    return subprocess.Popen(cmd, env={**os.environ, **FAST, **DUMP, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """`proc.communicate`, but a worker that does not exit in time is a failure that shows where it
    hangs: SIGABRT makes faulthandler (PYTHONFAULTHANDLER) print every thread's stack to its stderr."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            err = proc.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1]
        pytest.fail(f"worker {proc.pid} did not exit within {timeout:.0f} s; its stderr, ending in the stacks of its "
                    f"threads at SIGABRT:\n{err[-6000:]}")


def _wait_until_training(journal, study: str, count: int, procs, trained: int | None = None, seconds: float = 240):
    """Once the study has `count` RUNNING trials, `trained` (default all) of them with their MLflow run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            running = _read(journal, study).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        if len(running) >= count and len([t for t in running if t.user_attrs.get("mlflow_run_id")]) >= (
                count if trained is None else trained):
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.5)
    for p in procs:
        p.kill()
    pytest.fail("workers did not start training: " + " | ".join(p.communicate(timeout=30)[1][-1500:] for p in procs))


@pytest.mark.slow
def test_a_killed_workers_trial_is_retried_while_the_survivor_runs(store, tmp_path):
    journal = tmp_path / "study.log"
    # The victim "runs on another machine": its lease, not its pid, must tell the survivor it died.
    victim = _worker(journal, "rescue", 2, epochs=50, env={"FER_WORKER_HOST": "elsewhere"})
    _wait_until_training(journal, "rescue", 1, [victim])
    survivor = _worker(journal, "rescue", 2, epochs=1)
    _wait_until_training(journal, "rescue", 2, [victim, survivor], trained=1)  # both have a trial: kill the victim
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err[-3000:]
    study = _read(journal, "rescue")
    dead = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(dead) == 1 and dead[0].system_attrs[LEASE][0].startswith("elsewhere|"), study.trials
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == dead[0].number)
    assert retry.state == TrialState.COMPLETE and retry.params == dead[0].params
    first, second = study.trials[:2]
    assert first.params != second.params  # the joining worker drew from its own seed
    dead_run = mlflow.get_run(dead[0].user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["optuna.trial_state"] == "FAIL"
    parent = mlflow.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and len(children_of(parent.info.run_id)) == 3


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


@pytest.mark.slow
def test_sigterm_fails_the_trial_and_kills_the_parent_only_when_no_other_worker_runs(store, tmp_path):
    journal = tmp_path / "study.log"
    first, second = (_worker(journal, "stop", 4, epochs=50) for _ in range(2))  # stopped long before the end
    _wait_until_training(journal, "stop", 2, [first, second])
    parent = _read(journal, "stop").user_attrs["mlflow_parent_run_id"]
    first.send_signal(signal.SIGTERM)  # another worker still runs a trial: the parent stays RUNNING for it
    err = _communicate(first, timeout=120)[1]
    assert first.returncode != 0 and "left RUNNING" in _one_error_line(err)
    assert mlflow.get_run(parent).info.status == "RUNNING"
    second.send_signal(signal.SIGINT)  # the last worker: the parent ends KILLED
    err = _communicate(second, timeout=120)[1]
    assert second.returncode != 0 and f"parent run {parent} KILLED" in _one_error_line(err)
    study = _read(journal, "stop")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    for trial in study.trials:
        run = mlflow.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status in ("FAILED", "KILLED") and run.data.tags["optuna.trial_state"] == "FAIL"
    assert mlflow.get_run(parent).info.status == "KILLED"
