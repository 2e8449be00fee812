"""The command line as a user meets it: `fer-exp` and `mlflow run .`, bad input included."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA, all_runs

from fer_experiments import data as fer_data
from fer_experiments.cli import main

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_commands_and_models():
    out = invoke("--help").output
    assert all(cmd in out for cmd in ("train", "evaluate", "data"))
    train_help = invoke("train", "--help").output
    assert "custom_aug" in train_help and "resnet50" in train_help and "--aug-strength" in train_help
    assert "--aug_strength" not in train_help and "--experiment" not in train_help  # old spellings: accepted, not shown


@pytest.mark.parametrize("args, needle", [
    (["--data", "/nonexistent/fer"], "does not exist"),
    (["--model", "alexnet"], "unknown model 'alexnet'"),
    (["--dropout", "1.5"], "dropout=1.5 is out of range"),
    (["--epochs", "-3"], "epochs=-3 is out of range"),
    (["--epochs", "many"], "epochs='many' is not a valid int"),
    (["--epochs", "inf"], "epochs='inf' is not a valid int"),
    (["--epochs", "1.7"], "epochs='1.7' is not a valid int"),  # refused, not truncated to 1
    (["--patience", "-0.5"], "patience='-0.5' is not a valid int"),
    (["--learning-rate", "inf"], "learning_rate='inf' is not a valid float"),
    (["--seed", "-1"], "seed=-1 is out of range"),
    (["--seed", "99999999999"], "seed=99999999999 is out of range"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--model", "resnet50", "--weights", "/nonexistent/w.h5", "--image_size", "32"], "/nonexistent/w.h5"),
])
def test_bad_input_is_one_line_and_leaves_no_run(store, args, needle):
    result = CliRunner().invoke(main, ["train", "--data", SMALL_DATA, "--epochs", "1", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert all(r.info.status != "RUNNING" for r in all_runs())
    assert not all_runs()  # rejected before any run was created


def test_unknown_preset_key_is_an_error(store, tmp_path):
    preset = tmp_path / "typo.yaml"
    preset.write_text("model: custom\nlerning_rate: 0.01\n")
    result = CliRunner().invoke(main, ["train", "--preset", str(preset)])
    assert result.exit_code == 2 and "unknown key(s) lerning_rate" in result.output


@pytest.mark.parametrize("line, needle", [("epochs: null", "epochs=None is not a valid int"),
                                           ("epochs: [1, 2]", "epochs=[1, 2] is not a valid int"),
                                           ("dropout: yes", "dropout=True is not a valid float")])
def test_preset_values_of_the_wrong_type_are_one_line(store, tmp_path, line, needle):
    preset = tmp_path / "typed.yaml"
    preset.write_text(f"model: custom\n{line}\n")
    result = CliRunner().invoke(main, ["train", "--preset", str(preset), "--data", SMALL_DATA])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not all_runs()


def test_bad_image_fails_before_training(store, tmp_path):
    root = fer_data.write_synthetic(tmp_path / "faces", n=140, seed=1)
    victim = next((root / "train" / "happy").iterdir())
    victim.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["train", "--data", str(root), "--epochs", "1"])
    assert result.exit_code == 2 and victim.name in result.output
    assert len(result.output.strip().splitlines()) == 1 and not all_runs()


def test_data_commands(tmp_path, data_cache):
    out = invoke("data", "synthetic", tmp_path / "s", "--n", 300, "--seed", 3).output
    assert "wrote" in out
    table = invoke("data", "inspect", tmp_path / "s").output
    assert "SYNTHETIC" in table and "happy" in table and "disgust" in table
    invoke("data", "convert", tmp_path / "s", tmp_path / "s.csv")
    invoke("data", "convert", tmp_path / "s.csv", tmp_path / "back")
    a, b = fer_data.load_dataset(str(tmp_path / "s")), fer_data.load_dataset(str(tmp_path / "s.csv"))
    assert a.counts()["test"] == b.counts()["test"]


@pytest.mark.slow
def test_evaluate_on_a_test_only_folder(in_shared_store, tmp_path):
    result, data = in_shared_store.result, in_shared_store.cfg.data
    src = fer_data.write_synthetic(tmp_path / "other", n=300, seed=7)
    only_test = tmp_path / "only_test"
    shutil.copytree(src / "test", only_test / "test")
    out = invoke("evaluate", result.model_uri, "--data", only_test).output
    assert "test: accuracy" in out
    runs = [r for r in all_runs() if r.data.tags.get("fer.run_kind") == "evaluation"
            and r.data.params["data"] == str(only_test)]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    cm = json.loads(mlflow.artifacts.load_text(f"runs:/{runs[0].info.run_id}/evaluation/test/confusion_matrix.json"))
    n_test = len(fer_data.load_dataset(str(only_test)).splits["test"].y)
    assert np.asarray(cm["matrix"]).sum() == n_test
    test = fer_data.load_dataset(str(only_test)).splits["test"]
    recomputed = np.mean(result.model.predict(test.x.astype("float32"), verbose=0).argmax(1) == test.y)
    assert runs[0].data.metrics["test_accuracy"] == pytest.approx(recomputed, abs=1e-9)
    # a .keras file works too, without logging
    keras_file = tmp_path / "m.keras"
    result.model.save(keras_file)
    assert "test: accuracy" in invoke("evaluate", keras_file, "--data", only_test, "--no-log").output
    # With a validation split, temperature scaling is fitted there, as in training, and shown for each split.
    from fer_experiments.evaluation import calibration
    from fer_experiments.evaluation.tta import predict

    out = invoke("evaluate", keras_file, "--data", data, "--no-log", "--tta", "flip").output
    val = fer_data.load_dataset(data).splits["val"]
    _, fitted = calibration.choose_temperature(predict(result.model, val.x), val.y)
    assert f"temperature fitted on val by NLL: {fitted:.3f}" in out
    assert "ECE" in next(line for line in out.splitlines() if line.startswith("val: accuracy"))


def _mlflow_run(store, *params, experiment="e2e"):
    cmd = [shutil.which("mlflow") or "mlflow", "run", str(ROOT), "--env-manager", "local",
           "--experiment-name", experiment]
    for p in params:
        cmd += ["-P", p]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    env["MLFLOW_TRACKING_URI"] = store
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_mlflow_run_end_to_end(store):
    proc = _mlflow_run(store, "model=custom", "epochs=1", f"data={SMALL_DATA}", "preset=custom", "diagnostics=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(["e2e"])  # one run: the trainer continued MLflow's, no orphan
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "custom" and run.data.params["epochs"] == "1"
    assert run.data.params["optimizer"] == "adam" and run.data.params["aug_strength"] == "0.0"
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_accuracy")] == [1]
    assert run.data.tags["fer.model_uri"].startswith("models:/")
    # bad input through mlflow run: the run MLflow created ends FAILED, never RUNNING
    bad = _mlflow_run(store, "model=alexnet", f"data={SMALL_DATA}", experiment="e2e-bad")
    assert bad.returncode != 0 and "unknown model 'alexnet'" in bad.stderr
    (failed,) = all_runs(["e2e-bad"])
    assert failed.info.status == "FAILED"


@pytest.mark.parametrize("bug", [KeyError("val_accuracy"), ValueError("shapes (3,) and (4,) not aligned"),
                                 OSError("disk on fire")])
def test_internal_bugs_keep_their_traceback(store, monkeypatch, bug):
    # The error contract: only the project's UserError (and MLflow's "does not exist") is the user's fault.
    from fer_experiments import training

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(training, "train", broken)
    result = CliRunner().invoke(main, ["train", "--data", SMALL_DATA, "--epochs", "1"])
    assert result.exit_code == 1 and result.exception is bug  # a traceback, not a one-line "error:"
    assert "error:" not in result.output


def test_mlflow_does_not_exist_is_a_user_error(store):
    all_runs()  # the store exists before the command: its set-up log lines are not the command's output
    result = CliRunner().invoke(main, ["evaluate", "runs:/0123456789abcdef0123456789abcdef/model", "--data", SMALL_DATA])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not found" in lines[0], result.output


@pytest.mark.slow
def test_top_level_help_does_not_import_keras():
    # `fer-exp --help` must not pay for TensorFlow/Keras (it took 14 s when cli imported the registry).
    code = ("import sys; from click.testing import CliRunner; from fer_experiments.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0 and 'train' in r.output; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


MLFLOW_MISUSE = """
import mlflow
from fer_experiments.cli import main

@main.command("clash")
def clash():
    with mlflow.start_run():
        mlflow.log_param("epochs", 1)
        mlflow.log_param("epochs", 2)  # MLflow: INVALID_PARAMETER_VALUE, "Changing param values is not allowed"

main(["clash"])
"""


@pytest.mark.slow
def test_mlflow_misuse_is_a_bug_with_its_traceback(store):
    # MLflow raises INVALID_PARAMETER_VALUE for its own misuse too: that is never a one-line user error.
    out = subprocess.run([sys.executable, "-c", MLFLOW_MISUSE], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" in out.stderr and "Changing param values is not allowed" in out.stderr
    assert not any(line.startswith("error:") for line in out.stderr.splitlines())
