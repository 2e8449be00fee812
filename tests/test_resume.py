"""`--resume` after a real SIGKILL at every stage of a run: each metric step once, one LoggedModel,
and no retraining of what had been trained; runs that ended are refused with one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from conftest import all_runs

from fer_experiments.cli import main

DATA = "synthetic:600"
ROOT = Path(__file__).resolve().parents[1]

KILL_AT_STAGE = textwrap.dedent("""
    import os, signal, sys, keras
    from fer_experiments.config import build_config
    from fer_experiments.tracking import MlflowTracker
    from fer_experiments.training import train

    stage = sys.argv[2]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Killer(keras.callbacks.Callback):  # after the trainer's own callbacks: epochs are backed up first
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if stage == "mid-epoch" and self.epoch == 1 and batch == 2:
                die()

        def on_epoch_end(self, epoch, logs=None):
            if stage == "after-last-epoch" and epoch == 1:
                die()

    class Tracker(MlflowTracker):  # the end-of-run work: evaluation and metrics.json are logged by now
        def log_model(self, *args, **kwargs):
            if stage == "before-model":
                die()
            uri = super().log_model(*args, **kwargs)
            if stage == "after-model":
                die()
            return uri

    cfg = build_config(None, data=sys.argv[1], epochs=2, batch_size=32, model="custom", diagnostics=False)
    train(cfg, callbacks=[Killer()], tracker=Tracker(), verbose=0)
""")


def logged_models_of(run):
    return [m for m in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
            if m.source_run_id == run.info.run_id]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["mid-epoch", "after-last-epoch", "before-model", "after-model"])
def test_resume_after_a_kill_at_any_stage_records_everything_once(store, tmp_path, stage):
    from fer_experiments import tracking
    from fer_experiments.config import TrainConfig
    from fer_experiments.training import train

    script = tmp_path / "die.py"
    script.write_text(KILL_AT_STAGE)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(script), DATA, stage], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (run,) = all_runs()
    client = mlflow.MlflowClient()
    epochs_before = [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_accuracy")]
    cfg = TrainConfig(**tracking.MlflowTracker().run_config(run.info.run_id)).validate()
    result = train(cfg, resume_run_id=run.info.run_id, verbose=0)

    again = client.get_run(run.info.run_id)
    assert again.info.status == "FINISHED"
    for key in again.data.metrics:
        if key.startswith("system/"):
            continue  # MLflow's own sampler, one series per attempt
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_accuracy")] == [1, 2]
    assert again.data.metrics["epochs_run"] == 2 and result.epochs_run == 2
    history = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/history/history.csv").splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1"], history
    models = logged_models_of(again)
    assert len(models) == 1 and str(models[0].status) in ("READY", "LoggedModelStatus.READY"), models
    if stage != "mid-epoch":  # training had ended: the resume only finished the end-of-run work
        assert epochs_before == [1, 2]


@pytest.mark.parametrize("status, needle", [("FINISHED", "nothing to resume"), ("FAILED", "ended FAILED")])
def test_resume_of_a_run_that_ended_is_one_line(store, status, needle):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    mlflow.log_dict({"model": "custom"}, "config.json", run_id=run.info.run_id)
    client.set_terminated(run.info.run_id, status)
    result = CliRunner().invoke(main, ["train", "--resume", run.info.run_id])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and run.info.run_id in lines[0], lines
    assert client.get_run(run.info.run_id).info.status == status  # untouched


@pytest.mark.slow
def test_a_stopped_training_says_in_one_line_which_run_is_killed_and_how_to_continue_it(store):
    proc = subprocess.Popen([sys.executable, "-m", "fer_experiments.cli", "train", "--model", "custom", "--data", DATA,
                             "--epochs", "200", "--batch_size", "32", "--diagnostics", "false"],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    client, deadline = mlflow.MlflowClient(), time.monotonic() + 300
    try:
        while not any(client.get_metric_history(r.info.run_id, "epoch/val_accuracy") for r in all_runs()):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not reach its first epoch"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    (run,) = all_runs()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Aborted!" not in err and "Traceback" not in err, err[-3000:]
    assert errors[0].startswith(f"error: stopped (signal {int(signal.SIGTERM)}): run {run.info.run_id} is KILLED")
    assert f"fer-exp train --resume {run.info.run_id}" in errors[0]
    assert run.info.status == "KILLED"
