"""Optuna studies with real Optuna, real MLflow (temp store / real server) and real PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import mlflow
import optuna
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA, all_runs

from fer_experiments.cli import main
from fer_experiments.config import build_config
from fer_experiments.studies.storage import open_storage
from fer_experiments.studies.tuning import TuneSettings, tune

STATES = {"COMPLETE", "PRUNED", "FAIL"}
# Images per split in a trial (of SMALL_DATA's ~860 train / 96 val / 240 test): a trial's cost is
# mostly its epochs and end-of-run logging, and what these tests check needs no accuracy.
LIMIT = 150


def settings(**kw) -> TuneSettings:
    base = build_config(None, data=SMALL_DATA, epochs=kw.pop("epochs", 1), batch_size=32, model="custom",
                        diagnostics=False, limit=kw.pop("limit", LIMIT), seed=kw.pop("seed", 42))
    # Confirmation is off unless a test is about it: it trains confirm_top × confirm_seeds more runs.
    return TuneSettings(base=base, **{"n_trials": 2, "sampler": "random", "confirm_top": 0, **kw})


def children_of(parent: str):
    return [r for r in all_runs() if r.data.tags.get("mlflow.parentRunId") == parent
            and r.data.tags.get("fer.run_kind") != "worker"]


@pytest.mark.slow
def test_study_records_parent_children_best_and_plots(store):
    study, parent, best = tune(settings(study="four", pruner="none"))
    trials = study.trials
    assert len(trials) == 2 and sorted(t.number for t in trials) == [0, 1]
    kids = children_of(parent)
    assert len(kids) == 2
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    for kid in kids:
        trial = by_run[kid.info.run_id]
        assert kid.data.tags["optuna.trial_state"] == trial.state.name
        assert kid.data.tags["optuna.trial_number"] == str(trial.number)
        assert kid.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        assert float(kid.data.params["dropout"]) == pytest.approx(trial.params["dropout"])
        # the study ranks by the figure the trial's run records (the float32 model's evaluation)
        assert trial.value == kid.data.metrics["validation_accuracy"]
        # one model file per trial: the LoggedModel, no .keras copies beside it
        assert not mlflow.MlflowClient().list_artifacts(kid.info.run_id, "keras")
    run = mlflow.get_run(parent)
    assert run.data.tags["optuna.study_name"] == "four" and run.data.tags["optuna.sampler"] == "random"
    best_run = mlflow.get_run(best.user_attrs["mlflow_run_id"])
    for key in ("validation_accuracy", "test_accuracy", "validation_macro_f1"):  # the parent's row shows its champion
        assert run.data.metrics[key] == best_run.data.metrics[key], key
    assert run.data.params["storage"] == "journal file" and run.data.params["search_space"].endswith("custom.yaml")
    assert "four" in run.data.tags["mlflow.note.content"] and "validation_accuracy" in run.data.tags["mlflow.note.content"]
    assert run.data.tags["best_run_id"] == best.user_attrs["mlflow_run_id"]
    assert float(run.data.tags["best.learning_rate"]) == pytest.approx(best.params["learning_rate"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["champion_model_uri"] == "models:/four@champion"
    assert run.data.tags["best_model_uri"] == best.user_attrs["model_uri"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent, "study")}
    assert {"study/trials.csv", "study/optimization_history.png", "study/slice.png",
            "study/parallel_coordinate.png", "study/best_trial.json"} <= artifacts
    model = mlflow.keras.load_model("models:/four@champion")  # the registered champion serves
    assert model.output_shape == (None, 7)
    version = mlflow.MlflowClient().get_model_version_by_alias("four", "champion")
    assert version.run_id == best.user_attrs["mlflow_run_id"]
    # the study's saved view lists its trials, best first, with the tuned settings as columns
    import json

    tags = mlflow.MlflowClient().get_experiment(run.info.experiment_id).tags
    state = json.loads(json.loads(tags[f"mlflow.sharedViewState.fer-study-{parent[:12]}"])["state"])
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent}'"
    assert {"params.`dropout`", "params.`learning_rate`"} <= set(state["selectedColumns"])
    # a finished study run again registers nothing new
    tune(settings(study="four", pruner="none"))
    assert [v.version for v in mlflow.MlflowClient().search_model_versions("name='four'")] == [1]
    # resume: the same study with a higher target continues it under the same parent
    study2, parent2, _ = tune(settings(study="four", n_trials=3, pruner="none"))
    assert parent2 == parent and len(study2.trials) == 3 and len(children_of(parent)) == 3


def test_only_the_best_complete_trials_are_confirmed():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from fer_experiments.studies.confirmation import top_trials

    study = optuna.create_study(direction="maximize")
    dist = {"dropout": FloatDistribution(0, 0.5)}
    for state, value in [("COMPLETE", 0.5), ("PRUNED", None), ("COMPLETE", 0.7), ("FAIL", None), ("COMPLETE", 0.7),
                         ("COMPLETE", 0.6)]:
        study.add_trial(create_trial(state=TrialState[state], value=value, params={"dropout": 0.1}, distributions=dist,
                                     intermediate_values={0: 0.99} if state == "PRUNED" else {}))
    assert [t.number for t in top_trials(study, 3)] == [2, 4, 5]  # by value, the earlier of equals first
    assert [t.number for t in top_trials(study, 9)] == [2, 4, 5, 0]  # pruned and failed trials never
    assert top_trials(study, 0) == []


def test_the_champion_is_the_best_mean_not_the_best_single_trial(monkeypatch):
    # Trial 0 won the study by luck: its other seed does badly; trial 1 holds up. No training: the
    # trainer and the tracker are stand-ins (the test below runs the real ones).
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from fer_experiments.studies import confirmation

    study = optuna.create_study(direction="maximize", study_name="lucky")
    for value, dropout in [(0.8, 0.1), (0.7, 0.2), (0.6, 0.3)]:
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, params={"dropout": dropout},
                                     distributions={"dropout": FloatDistribution(0, 0.5)},
                                     user_attrs={"mlflow_run_id": f"own-{dropout}", "test_accuracy": 0.5}))
    other_seed = {0.1: 0.5, 0.2: 0.74}  # validation accuracy with seed 43, by the trial's dropout
    trained = []

    def fake_train(cfg, **kw):
        trained.append((kw["extra_tags"]["fer.confirm_trial"], cfg.seed, cfg.dropout))
        return SimpleNamespace(run_id=f"run-{len(trained)}", metrics={"validation_accuracy": other_seed[cfg.dropout],
                                                                       "test_accuracy": 0.9})

    class Tracker:
        def confirmation_runs(self, parent):  # trial 1's run finished before this worker was killed
            return {(1, 43): {"run_id": "old", "validation_accuracy": 0.74, "test_accuracy": 0.9}}

        def log_confirmation(self, parent, table_csv, metrics, tags):
            self.logged = {"csv": table_csv, **metrics, **tags}

    monkeypatch.setattr(confirmation.training, "train", fake_train)
    s = settings(confirm_top=2, confirm_seeds=1)
    tracker = Tracker()
    result = confirmation.confirm(s, study, "parent", tracker, echo=lambda line: None)
    assert trained == [("0", 43, 0.1)]  # only the missing run, with the trial's configuration and seed 42 + 1
    assert result.champion.number == 1 and study.best_trial.number == 0
    assert result.summary["validation_accuracy"] == pytest.approx(0.72)
    assert result.table["trial"].tolist() == [0, 1] and result.table["seeds"].tolist() == ["42 43", "42 43"]
    assert result.table["validation_accuracy_mean"].tolist() == pytest.approx([0.65, 0.72])
    assert result.table["test_accuracy_mean"].tolist() == pytest.approx([0.7, 0.7])  # reported, never selected on
    assert result.table["run_ids"].tolist() == ["own-0.1 run-1", "own-0.2 old"]
    logged = tracker.logged  # the parent's table, figures and tags name the confirmed champion
    assert logged["champion_trial"] == 1 and logged["optuna_best_trial"] == 0
    assert logged["confirmed_validation_accuracy"] == pytest.approx(0.72) and logged["confirmed_seeds_finished"] == 2
    assert logged["champion_validation_accuracy"] == "validation accuracy 0.7200 ± 0.0283 over 2 seeds"
    assert logged["csv"].splitlines()[0] == ("trial,seeds,validation_accuracy_mean,validation_accuracy_sd,test_accuracy_mean,"
                                             "trial_validation_accuracy,run_ids")


@pytest.mark.slow
def test_study_champion_is_the_best_mean_over_seeds_of_its_top_trials(store):
    lines = []
    s = settings(study="sure", n_trials=4, pruner="none", confirm_top=2, confirm_seeds=1)
    study, parent, best = tune(s, echo=lines.append)
    kids = children_of(parent)
    trial_runs = {int(k.data.tags["optuna.trial_number"]): k for k in kids if "optuna.trial_number" in k.data.tags}
    confirming = [k for k in kids if "fer.confirm_trial" in k.data.tags]
    assert len(trial_runs) == 4 and len(confirming) == 2 and len(kids) == 6
    # the top 2 trials by the value their runs logged (the earlier of equals first) got one run each, seed 42 + 1
    value = {n: run.data.metrics["validation_accuracy"] for n, run in trial_runs.items()}
    top = sorted(value, key=lambda n: (-value[n], n))[:2]
    assert sorted(int(k.data.tags["fer.confirm_trial"]) for k in confirming) == sorted(top)
    for k in confirming:
        trial = study.trials[int(k.data.tags["fer.confirm_trial"])]
        assert k.info.status == "FINISHED" and k.data.tags["fer.repeat_seed"] == k.data.params["seed"] == "43"
        assert trial_runs[trial.number].data.params["seed"] == "42"  # its own run: a distinct seed
        assert float(k.data.params["dropout"]) == pytest.approx(trial.params["dropout"])  # the trial's configuration
        assert float(k.data.params["learning_rate"]) == pytest.approx(trial.params["learning_rate"])
    # the champion: the best mean over each trial's two runs (the first of equals in the study's order)
    confirm_val = {int(k.data.tags["fer.confirm_trial"]): k.data.metrics["validation_accuracy"] for k in confirming}
    mean = {n: (value[n] + confirm_val[n]) / 2 for n in top}
    expected = max(top, key=lambda n: mean[n])
    assert best.number == expected and study.best_trial.value == value[top[0]]  # Optuna's own best stays its own
    version = mlflow.MlflowClient().get_model_version_by_alias("sure", "champion")
    assert version.run_id == trial_runs[expected].info.run_id  # the champion trial's own model
    run = mlflow.get_run(parent)
    assert run.data.tags["best_trial"] == run.data.tags["champion_trial"] == str(expected)
    assert run.data.tags["best_run_id"] == trial_runs[expected].info.run_id
    assert run.data.metrics["confirmed_validation_accuracy"] == pytest.approx(mean[expected])
    assert run.data.metrics["validation_accuracy"] == trial_runs[expected].data.metrics["validation_accuracy"]
    assert " ± " in run.data.tags["champion_validation_accuracy"]
    table = mlflow.artifacts.load_text(f"runs:/{parent}/study/confirmation.csv")
    assert table.splitlines()[0].startswith("trial,seeds,validation_accuracy_mean,validation_accuracy_sd,test_accuracy_mean")
    assert [line.split(",")[:2] for line in table.splitlines()[1:]] == [[str(n), "42 43"] for n in top]
    assert lines[-1].startswith(f"champion trial {expected}: validation accuracy ") and " ± " in lines[-1]
    # a finished study run again trains nothing and registers nothing new
    tune(s)
    assert len(children_of(parent)) == 6
    assert [v.version for v in mlflow.MlflowClient().search_model_versions("name='sure'")] == [1]
    # a worker killed during confirmation: the rerun trains only the run that did not finish, in a new run
    killed = confirming[0]
    mlflow.MlflowClient().set_terminated(killed.info.run_id, "KILLED")
    lines = []
    tune(s, echo=lines.append)
    again = [k for k in children_of(parent) if "fer.confirm_trial" in k.data.tags and k.info.status == "FINISHED"]
    assert len(children_of(parent)) == 7 and len(again) == 2
    assert {(k.data.tags["fer.confirm_trial"], k.data.tags["fer.repeat_seed"]) for k in again} == {
        (k.data.tags["fer.confirm_trial"], "43") for k in confirming}
    assert any("1 run(s) to train, 1 finished before" in line for line in lines), lines


@pytest.mark.slow
def test_confirm_top_0_confirms_nothing(store):
    result = CliRunner().invoke(main, ["tune", "--model", "custom", "--data", SMALL_DATA, "--epochs", "1", "--limit",
                                       str(LIMIT), "--batch-size", "32", "--n-trials", "1", "--study", "unsure",
                                       "--sampler", "random", "--pruner", "none", "--diagnostics", "false",
                                       "--confirm-top", "0"])
    assert result.exit_code == 0, result.output
    parent = next(r for r in all_runs() if r.data.tags.get("fer.run_kind") == "study").info.run_id
    kids = children_of(parent)
    assert len(kids) == 1 and "fer.confirm_trial" not in kids[0].data.tags
    assert "study/confirmation.csv" not in {a.path for a in mlflow.MlflowClient().list_artifacts(parent, "study")}
    lines = result.stdout.strip().splitlines()
    assert not [line for line in lines if line.startswith("confirm")] and lines[-1].startswith("best trial 0: "), lines
    assert mlflow.MlflowClient().get_model_version_by_alias("unsure", "champion").run_id == kids[0].info.run_id


@pytest.mark.slow
def test_bad_trials_are_pruned_and_marked(store, tmp_path):
    space = tmp_path / "space.yaml"
    # lr 1e-7 cannot learn in 5 epochs: the median pruner must stop such trials early. Seed 6 draws
    # good, hopeless, good, good, hopeless: trial 4, the first judged after the pruner's 4 start-up
    # trials, is hopeless (measured: it stays at 0.10 validation accuracy, the good ones at 0.25).
    space.write_text("learning_rate: {choices: [0.003, 1.0e-7]}\ndropout: {low: 0.0, high: 0.2}\n")
    study, parent, _ = tune(settings(study="prune", n_trials=5, epochs=5, search_space=str(space), pruner="median",
                                     seed=6))
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [(t.params, t.state.name) for t in study.trials]
    assert all(len(t.intermediate_values) < 5 for t in pruned)  # stopped before the last epoch
    # past the pruner's 4 start-up trials, every hopeless trial is pruned
    hopeless = [t for t in study.trials if t.params["learning_rate"] == 1e-7 and t.number >= 4]
    assert hopeless and all(t.state.name == "PRUNED" for t in hopeless)
    kids = {k.info.run_id: k for k in children_of(parent)}
    for t in pruned:
        kid = kids[t.user_attrs["mlflow_run_id"]]
        assert kid.data.tags["optuna.trial_state"] == "PRUNED" and kid.info.status == "KILLED"


@pytest.mark.parametrize("args, needle", [
    (["--sampler", "grid"], "'grid' is not one of 'tpe', 'random'"),
    (["--pruner", "magic"], "'magic' is not one of"),
    (["--model", "alexnet"], "unknown model 'alexnet'"),
    (["--storage", "postgresql://fer@127.0.0.1:1/nowhere"], "is unreachable"),
    (["--storage", "grpc://127.0.0.1"], "is not grpc://HOST:PORT"),
    (["--storage", "grpc://127.0.0.1:1"], "no study server answered"),
    (["--storage", "mysql://fer@127.0.0.1:1/nowhere"], "needs the database driver 'MySQLdb', which is not installed: pip"),
    (["--n_trials", "0"], "--n-trials"),
])
def test_bad_tune_input_is_one_line_before_any_trial(store, args, needle):
    result = CliRunner().invoke(main, ["tune", "--data", SMALL_DATA, "--epochs", "1", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not all_runs()


@pytest.mark.parametrize("content, needle", [
    ("dropout: [0.1, 0.2", "not valid YAML"),
    ("dropout: {low: 0.5, high: 0.1}", "inverted range"),
    ("learning_rate: {low: 0, high: 0.1, log: true}", "log-scaled"),
    ("dropout: {choices: []}", "empty choices"),
    ("colour: {low: 0, high: 1}", "not a searchable setting"),
])
def test_malformed_search_space(store, tmp_path, content, needle):
    space = tmp_path / "space.yaml"
    space.write_text(content)
    result = CliRunner().invoke(main, ["tune", "--data", SMALL_DATA, "--search_space", str(space)])
    assert result.exit_code == 2 and needle in result.output, result.output
    assert not all_runs()


def test_existing_study_with_other_direction(store, tmp_path):
    journal = tmp_path / "j.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    optuna.create_study(study_name="other", storage=storage, direction="minimize")
    result = CliRunner().invoke(main, ["tune", "--data", SMALL_DATA, "--study", "other",
                                       "--storage", f"journal:{journal}"])
    assert result.exit_code == 2 and "direction minimize" in result.output, result.output
    assert not all_runs()


def _worker(storage: str, study: str, n_trials: int, extra_env=None, epochs=1):
    cmd = [sys.executable, "-m", "fer_experiments.cli", "tune", "--model", "custom", "--data", SMALL_DATA,
           "--epochs", str(epochs), "--limit", str(LIMIT), "--n_trials", str(n_trials), "--study", study,
           "--storage", storage,
           "--sampler", "random", "--pruner", "none", "--diagnostics", "false", "--confirm-top", "0"]
    return subprocess.Popen(cmd, env={**os.environ, **(extra_env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _check_shared_study(storage_url, study_name, n_trials):
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    numbers = [t.number for t in study.trials]
    assert len(finished) == n_trials and len(numbers) == len(set(numbers))
    parents = [r for r in all_runs() if r.data.tags.get("fer.run_kind") == "study"]
    assert len(parents) == 1
    kids = children_of(parents[0].info.run_id)
    assert {k.data.tags["optuna.trial_number"] for k in kids} >= {str(t.number) for t in finished}
    return study, parents[0]


@pytest.mark.slow
def test_two_workers_share_a_journal_study(mlflow_server, tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    workers = [_worker(storage, "shared", 3) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[-3000:] for o in outputs]
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log")))
    _check_shared_study(journal, "shared", 3)


@pytest.mark.slow
def test_two_workers_share_a_postgres_study(mlflow_server, postgres):
    url = postgres()
    workers = [_worker(url, "pg", 3) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for out, w in zip(outputs, workers):
        print(f"--- worker exit {w.returncode}\n{out[-4000:]}")
    assert all(w.returncode == 0 for w in workers)
    _check_shared_study(url, "pg", 3)


@pytest.mark.slow
def test_killed_worker_trial_fails_and_is_retried(mlflow_server, postgres):
    url = postgres()
    fast = {"FER_HEARTBEAT_S": "1"}
    victim = _worker(url, "kill", 1, fast, epochs=50)  # killed long before its trial would end
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until a trial runs and its MLflow child exists
        try:
            running = optuna.load_study(study_name="kill", storage=url).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:
            running = []
        if running and running[0].user_attrs.get("mlflow_run_id"):
            break
        time.sleep(0.5)
    else:
        victim.kill()
        pytest.fail(victim.communicate()[0][-3000:])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(4)  # past the heartbeat grace period (3 × 1 s)
    rescuer = _worker(url, "kill", 1, fast)
    out = rescuer.communicate(timeout=600)[0]
    assert rescuer.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="kill", storage=url)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and len([t for t in study.trials if t.state.name == "COMPLETE"]) == 1
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == failed[0].params
    dead_run = mlflow.get_run(failed[0].user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["optuna.trial_state"] == "FAIL"


@pytest.mark.slow
def test_parent_stays_running_until_the_study_is_done(store):
    lines = []
    # Worker A stops after its first trial (timeout): the study is not done, so its parent must stay RUNNING.
    _, parent, _ = tune(settings(study="halves", n_trials=2, pruner="none", timeout=1), echo=lines.append)
    assert len([line for line in lines if line.startswith("trial ")]) == 1
    assert mlflow.get_run(parent).info.status == "RUNNING"
    # Worker B finishes it: now FINISHED, with the champion registered.
    study, parent_b, best = tune(settings(study="halves", n_trials=2, pruner="none"), echo=lines.append)
    assert parent_b == parent and len(study.trials) == 2
    run = mlflow.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["champion_model_uri"] == "models:/halves@champion"
    # one console line per finished trial: number, state, value, minutes and params
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert len(trial_lines) == 2 and all(" min [" in line and "dropout=" in line for line in trial_lines)


@pytest.mark.slow
def test_trials_that_always_fail_stop_the_study(store, tmp_path):
    bad = tmp_path / "not_weights.h5"
    bad.write_text("not a weights file")
    started = time.monotonic()
    preset = tmp_path / "small_vgg.yaml"
    preset.write_text("model: vgg16\nimage_size: 32\n")
    result = CliRunner().invoke(main, ["tune", "--model", "vgg16", "--experiment", str(preset), "--weights", str(bad),
                                       "--data", SMALL_DATA, "--n_trials", "50", "--epochs", "1", "--diagnostics", "0",
                                       "--study", "doomed", "--storage", str(tmp_path / "journal.log")])
    assert result.exit_code == 2, result.output
    assert "stopped after 3 failed trials in a row" in result.output and "WeightsError" in result.output
    assert time.monotonic() - started < 120  # seconds, not the 1,153 trials of the old loop
    study = optuna.load_study(study_name="doomed", storage=open_storage(str(tmp_path / "journal.log"), on_fail=None))
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3


@pytest.mark.slow
def test_study_resumed_against_another_store_gets_a_new_parent(store, tmp_path, monkeypatch):
    journal = str(tmp_path / "journal.log")
    _, old_parent, _ = tune(settings(study="moved", n_trials=1, pruner="none", storage=journal))
    other = f"sqlite:///{tmp_path / 'other.db'}"  # another MLFLOW_TRACKING_URI: the old parent is not there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    mlflow.set_tracking_uri(other)
    lines = []
    study, new_parent, _ = tune(settings(study="moved", n_trials=2, pruner="none", storage=journal),
                                echo=lines.append)
    assert new_parent != old_parent and any(f"parent run {old_parent} is not in" in line for line in lines)
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert mlflow.get_run(new_parent).info.status == "FINISHED" and len(children_of(new_parent)) == 1
    # Whichever trial is best, the run and model tags name what this store holds or say nothing.


@pytest.mark.slow
def test_basic_auth_server_refuses_a_worker_without_credentials_in_one_line(mlflow_auth_server, tmp_path, monkeypatch):
    # A worker WITH credentials tunes through a basic-auth server in tests/test_many_machines.py.
    from conftest import AUTH_ADMIN
    from mlflow.server import get_app_client

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", AUTH_ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", AUTH_ADMIN[1])
    get_app_client("basic-auth", tracking_uri=mlflow_auth_server).create_user("worker", "worker-pw-5678")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    base["MLFLOW_TRACKING_URI"] = mlflow_auth_server
    base["PYTHONPATH"] = os.getcwd() + os.pathsep + base.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "fer_experiments.cli", "tune", "--model", "custom", "--data", SMALL_DATA,
           "--n_trials", "1", "--epochs", "1", "--limit", str(LIMIT), "--study", "secure",
           "--storage", str(tmp_path / "journal.log"),
           "--pruner", "none", "--diagnostics", "false", "--confirm-top", "0"]
    denied = subprocess.run(cmd, env=base, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                            timeout=600)
    assert denied.returncode == 2, denied.stderr[-2000:]
    lines = [line for line in denied.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "MLFLOW_TRACKING_USERNAME" in lines[0], denied.stderr[-2000:]
    assert "worker-pw-5678" not in denied.stderr + denied.stdout
    assert not all_runs()  # refused before the study: no parent, no trial
