"""What the console says: option helps that say what each setting does (and its choices), a quick
`train --help`, TensorFlow's start-up noise off unless FER_DEBUG=1, a line when early stopping ends a
run, a line with its seconds per step of the end-of-run work, and one line (once) without graphviz."""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from pathlib import Path

import keras
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA

from fer_experiments import config, models
from fer_experiments.cli import main
from fer_experiments.tracking import logged_models
from fer_experiments.training import progress
from fer_experiments.training.resume import ResumableEarlyStopping

ROOT = Path(__file__).resolve().parent.parent


def test_the_model_names_of_the_help_are_the_registry():
    assert config.MODEL_NAMES == tuple(models.list_models())  # add a new model's name to config.MODEL_NAMES


def test_every_setting_says_what_it_does_and_lists_its_choices():
    shown = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())  # unwrapped
    for f in dataclasses.fields(config.TrainConfig):
        text = config.help_text(f.name)
        assert text.strip() not in (f.name, f.name.replace("_", " ")) and len(text) > 20, f.name
        assert " ".join(text.split()) in shown, f.name
        choices = f.metadata["choices"] or (config.MODEL_NAMES if f.name == "model" else ())
        assert all(choice in text for choice in choices), f.name
        if f.metadata["choices"]:  # and validation takes exactly those
            with pytest.raises(config.ConfigError, match=", ".join(f.metadata["choices"])):
                config.build_config(None, **{f.name: "bogus"})
            for choice in f.metadata["choices"]:
                config.build_config(None, **{f.name: choice})
    parsed = main.commands["train"].make_context("train", []).params
    assert all(parsed[f.name] is None for f in dataclasses.fields(config.TrainConfig))


def _early_stopping(tmp_path, accuracies, announce=True, patience=2):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    stopper = ResumableEarlyStopping(tmp_path, monitor="val_accuracy", patience=patience, restore_best_weights=True,
                                     mode="max", announce=announce)
    stopper.set_model(model)
    model.stop_training = False  # what `fit` does, and then calls the callbacks like this
    stopper.on_train_begin()
    for epoch, value in enumerate(accuracies):
        stopper.on_epoch_end(epoch, {"val_accuracy": value})
        if model.stop_training:
            break
    stopper.on_train_end()
    return stopper


def test_early_stopping_says_so_in_one_line(tmp_path, capsys):
    _early_stopping(tmp_path / "a", [0.5, 0.6125, 0.6, 0.55, 0.7])
    assert capsys.readouterr().out == ("early stopping after epoch 4: val_accuracy has not improved for 2 epochs; "
                                       "restoring epoch 2's weights (val_accuracy 0.6125)\n")
    _early_stopping(tmp_path / "b", [0.5, 0.7, 0.6], patience=5)  # ran to the end, on an earlier epoch's weights
    assert capsys.readouterr().out == "after epoch 3: restoring epoch 2's weights, the best (val_accuracy 0.7000)\n"
    _early_stopping(tmp_path / "c", [0.5, 0.6, 0.7])  # the last epoch was the best: nothing to say
    _early_stopping(tmp_path / "d", [0.5, 0.4, 0.3], announce=False)  # Optuna trials (verbose=0)
    assert capsys.readouterr().out == ""


def test_a_step_is_one_line_with_its_seconds(capsys):
    with progress.step("evaluating test", True):
        pass
    with progress.step("quiet", False):
        pass
    with pytest.raises(ValueError), progress.step("logging the model", True):
        raise ValueError("boom")
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"  evaluating test … \d+\.\d s", lines[0]), lines
    assert re.fullmatch(r"  logging the model … failed after \d+\.\d s", lines[1]) and len(lines) == 2, lines


def test_no_graphviz_is_one_plain_line_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # a real missing `dot`, as on a machine without graphviz
    monkeypatch.setattr(logged_models._log_diagram, "said", False, raising=False)  # as in a fresh process
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UserWarning with its source line
        for _ in range(3):  # three runs of one process (a study's trials)
            logged_models._log_diagram(model, tmp_path / "architecture.png")
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1, out
    assert out.err.startswith("warning: no architecture diagram") and "install graphviz" in out.err


HELP_IMPORTS = """
import runpy, sys
for command in ("train", "tune"):
    sys.argv = ["fer_experiments", command, "--help"]
    try:
        runpy.run_module("fer_experiments", run_name="__main__")
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
print(sorted(m for m in ("keras", "tensorflow", "mlflow") if m in sys.modules))
"""


@pytest.mark.slow
def test_train_and_tune_help_import_neither_keras_nor_mlflow():
    import subprocess

    out = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "custom_aug" in out.stdout and "mixed_bfloat16" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_a_console_run_tells_its_story_without_tensorflow_noise(store, tmp_path):
    """One short real `python -m fer_experiments train`: the end-of-run steps each say their seconds,
    and TensorFlow's C++ banner and MLflow's system-metrics chatter are gone; FER_DEBUG=1 keeps them."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "FER_DEBUG")}
    out = subprocess.run([sys.executable, "-m", "fer_experiments", "train", "--model", "custom", "--data", SMALL_DATA,
                          "--limit", "200", "--epochs", "1", "--diagnostics", "false"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = re.findall(r"^  (.+?) … \d+\.\d s$", out.stdout, flags=re.M)
    assert [s.split(" (")[0] for s in steps] == ["evaluating validation", "evaluating test", "calibration",
                                                 "metrics and figures of validation", "metrics and figures of test",
                                                 "history and curves", "logging the model"], out.stdout
    for noise in ("cpu_feature_guard", "absl::InitializeLog", "retracing", "system metrics", "UserWarning"):
        assert noise not in out.stderr + out.stdout, noise
    # MLflow's UI would open on its GenAI overview: the run prints the links that open the runs, and the
    # headline view they name is saved on the experiment (`tracking.ui_views`).
    import json

    import mlflow
    from conftest import all_runs

    (run,) = all_runs()
    exp = run.info.experiment_id
    assert f"/#/experiments/{exp}/runs/{run.info.run_id}?workflowType=machine_learning" in out.stdout
    assert f"/#/experiments/{exp}/runs?workflowType=machine_learning&viewStateShareKey=fer-headline" in out.stdout
    view = json.loads(mlflow.MlflowClient().get_experiment(exp).tags["mlflow.sharedViewState.fer-headline"])
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`validation_accuracy`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:2] == ["metrics.`validation_accuracy`", "metrics.`test_accuracy`"]
    check = "import os, fer_experiments; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    for extra, level in (({}, "2"), ({"FER_DEBUG": "1"}, "None"), ({"TF_CPP_MIN_LOG_LEVEL": "0"}, "0")):
        shown = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env={**env, **extra})
        assert shown.stdout.strip() == level, (extra, shown.stderr)
