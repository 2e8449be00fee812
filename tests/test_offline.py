"""File-only runs: train where MLflow is not installed, import the folder into MLflow later.

The training process stands for an accelerator machine: JAX backend (where JAX is installed), and
`import mlflow`, `import tensorflow` and `import optuna` all fail in it. The import runs here, on
TensorFlow: the model crosses backends as the `.keras` file does in real use."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner

from fer_experiments.cli import main
from fer_experiments.tracking import imports, tags

# A process in which `import mlflow` (and TensorFlow, Optuna) fails, as on an accelerator machine.
NO_MLFLOW = textwrap.dedent("""
    import os, sys
    MISSING = ("mlflow", "optuna") + (("tensorflow",) if os.environ["KERAS_BACKEND"] == "jax" else ())
    class Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MISSING:
                raise ImportError(name + " is not installed here")
    sys.meta_path.insert(0, Missing())
    from fer_experiments.cli import main
    main(sys.argv[1:])
""")


@pytest.fixture(scope="module")
def file_run(tmp_path_factory, data_cache):
    """One run trained with --run-folder in a process that cannot import mlflow."""
    root = tmp_path_factory.mktemp("offline")
    script = root / "no_mlflow.py"
    script.write_text(NO_MLFLOW)
    backend = "jax" if importlib.util.find_spec("jax") else "tensorflow"
    env = {**os.environ, "KERAS_BACKEND": backend}
    proc = subprocess.run([sys.executable, str(script), "train", "--data", "synthetic:600", "--epochs", "2",
                           "--batch_size", "32", "--run-folder", str(root / "runs")],
                          capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (root / "runs").iterdir()
    return folder, proc.stdout


@pytest.mark.slow
def test_file_run_records_everything_without_mlflow(file_run):
    folder, stdout = file_run
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "FINISHED" and meta["end_time"] >= meta["start_time"]
    assert meta["tags"][tags.SYNTHETIC] == "true" and meta["experiment"] == "fer2013-synthetic"
    params = json.loads((folder / "params.json").read_text())
    assert params["epochs"] == "2" and int(params["n_train"]) > 0
    assert params["keras_backend"] == ("jax" if importlib.util.find_spec("jax") else "tensorflow")
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert sorted(m["step"] for m in lines if m["key"] == "epoch/val_accuracy") == [0, 1]
    assert {"validation_accuracy", "test_accuracy", "epochs_run"} <= {m["key"] for m in lines}
    for path in ("config.json", "history/history.csv", "history/training_curves.png",
                 "evaluation/val/confusion_matrix.png", "evaluation/val/saliency.png",
                 "evaluation/test/classification_report.txt"):
        assert (folder / "artifacts" / path).is_file(), path
    model_file = folder / "model" / "custom_aug.keras"
    assert model_file.is_file() and f"model: {model_file}" in stdout


@pytest.mark.slow
def test_import_makes_an_ordinary_run_and_refuses_twice(file_run, store):
    folder, _ = file_run
    meta = json.loads((folder / "run.json").read_text())
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    run_id = imports.import_run(folder)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == meta["run_name"]
    assert (run.info.start_time, run.info.end_time) == (meta["start_time"], meta["end_time"])
    assert run.data.params == json.loads((folder / "params.json").read_text())
    assert run.data.tags[tags.IMPORTED_FROM] == str(folder.resolve())
    history = mlflow.MlflowClient().get_metric_history(run_id, "epoch/val_accuracy")
    recorded = sorted((m["step"], m["value"]) for m in lines if m["key"] == "epoch/val_accuracy")
    assert sorted((h.step, h.value) for h in history) == recorded
    assert run.data.metrics["test_accuracy"] == next(m["value"] for m in lines if m["key"] == "test_accuracy")
    assert {d.dataset.name.rsplit("-", 1)[1] for d in run.inputs.dataset_inputs} == {"train", "val", "test"}
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "evaluation/val")}
    assert {"evaluation/val/confusion_matrix.png", "evaluation/val/saliency.png"} <= names
    images = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "images") if a.path.endswith(".png")]
    recorded_images = sorted((folder / "images" / "epoch~predictions").glob("*.png"))
    assert len(recorded_images) == 2 and len(images) == 2  # one per epoch, replayed with its step
    assert sorted(p.split("+step+")[1].split("+")[0] for p in images) == ["0", "1"]

    # The logged model is the file's model: same predictions, metrics attached to the LoggedModel.
    import keras

    uri = run.data.tags[tags.MODEL_URI]
    x = np.load(folder / "model" / "input_example.npy")
    expected = keras.saving.load_model(folder / "model" / "custom_aug.keras").predict(x, verbose=0)
    np.testing.assert_allclose(mlflow.keras.load_model(uri).predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    logged = mlflow.get_logged_model(uri.split("/")[-1])
    assert {m.key for m in logged.metrics} >= {"test_accuracy", "validation_accuracy"}

    again = CliRunner().invoke(main, ["import-run", str(folder)])
    assert again.exit_code == 2 and "imported already" in again.output and run_id in again.output
    assert len(mlflow.search_runs(search_all_experiments=True)) == 1


def test_import_of_a_folder_that_is_no_run(tmp_path, store):
    result = CliRunner().invoke(main, ["import-run", str(tmp_path)])
    assert result.exit_code == 2 and "not a file-only run folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
