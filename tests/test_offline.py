"""File-only runs: train where MLflow is not installed, import the folder into MLflow later.

The training process stands for an accelerator machine: JAX backend (where JAX is installed), and
`import mlflow`, `import tensorflow` and `import optuna` all fail in it. The import runs here, on
TensorFlow: the model crosses backends as the `.keras` file does in real use."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.entities import ViewType

from fer_experiments.cli import main
from fer_experiments.tracking import imports, run_folder, tags

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
    assert sorted(m["step"] for m in lines if m["key"] == "epoch/val_accuracy") == [1, 2]
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
    assert len(recorded_images) == 3 and len(images) == 3  # before training and after each epoch, with its step
    assert sorted(p.split("+step+")[1].split("+")[0] for p in images) == ["0", "1", "2"]

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


# Hostile run folders: each edits a copy of the real one. `o` is a folder outside the run folder
# holding what a hostile folder points at; the import must refuse with one line naming `named`.
def _link(path, target):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.symlink_to(target)


def _edit_json(path, change):
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _add_metric(f, key):
    with open(f / "metrics.jsonl", "a") as out:
        out.write(json.dumps({"key": key, "value": 1.0, "step": 0, "timestamp": 1}) + "\n")


def _model_file(f):
    return "model/" + json.loads((f / "model" / "model.json").read_text())["file"]


def _an_image(f):
    return next((f / "images").glob("*/*.png")).relative_to(f).as_posix()


HOSTILE = {  # case: (what the hostile folder does, the file the refusal must name)
    "artifact-symlink": (lambda f, o: _link(f / "artifacts/config.json", o / "secret.txt"), "artifacts/config.json"),
    "deep-artifact-symlink": (lambda f, o: _link(f / "artifacts/evaluation/test/classification_report.txt",
                                                 o / "secret.txt"), "classification_report.txt"),
    "artifacts-dir-symlink": (lambda f, o: _link(f / "artifacts", o), "artifacts"),
    "image-symlink": (lambda f, o: _link(f / _an_image(f), o / "picture.png"), "png' is a symlink"),
    "images-dir-symlink": (lambda f, o: _link(f / "images", o), "images"),
    "model-file-symlink": (lambda f, o: _link(f / _model_file(f), o / "other.keras"), "keras' is a symlink"),
    "artifact-fifo": (lambda f, o: os.mkfifo(f / "artifacts/pipe"), "artifacts/pipe"),  # reading it would block
    "model-file-absolute": (lambda f, o: _edit_json(f / "model/model.json", lambda m: {
        **m, "file": str(o / "other.keras")}), "model/model.json"),
    "model-file-traversal": (lambda f, o: _edit_json(f / "model/model.json", lambda m: {
        **m, "file": "../../x.keras"}), "model/model.json"),
    "marker-dangling-symlink": (lambda f, o: _link(f / "imported.json", o / "created.json"), "imported.json"),
    "marker-symlink": (lambda f, o: _link(f / "imported.json", o / "secret.txt"), "imported.json"),
    "run-json-symlink": (lambda f, o: _link(f / "run.json", shutil.move(f / "run.json", o / "run.json")), "run.json"),
    "metrics-symlink": (lambda f, o: _link(f / "metrics.jsonl", shutil.copy(f / "metrics.jsonl", o)), "metrics.jsonl"),
    "model-name-traversal": (lambda f, o: _edit_json(f / "model/model.json", lambda m: {**m, "name": "../x"}),
                             "model/model.json"),
    "register-name-traversal": (lambda f, o: _edit_json(f / "model/model.json", lambda m: {**m, "register": "../x"}),
                                "model/model.json"),
    "param-key-traversal": (lambda f, o: _edit_json(f / "params.json", lambda p: {**p, "../x": "1"}), "params.json"),
    "metric-key-traversal": (lambda f, o: _add_metric(f, "../x"), "metrics.jsonl"),
    "metric-key-bad-character": (lambda f, o: _add_metric(f, "acc%"), "metrics.jsonl"),
    "tag-key-traversal": (lambda f, o: _edit_json(f / "run.json", lambda r: {**r, "tags": {**r["tags"], "../x": "1"}}),
                          "run.json"),
    "image-key-traversal": (lambda f, o: (f / "images/epoch~predictions").rename(f / "images/..~..~x"), "images/"),
    "run-json-too-big": (lambda f, o: os.truncate(f / "run.json", run_folder.MAX_JSON_BYTES + 1), "run.json"),
    "metrics-too-big": (lambda f, o: os.truncate(f / "metrics.jsonl", imports.MAX_METRICS_BYTES + 1),
                        "metrics.jsonl"),
}


def _snapshot(root):
    """Every path under root but the store's own files, with its link target or content digest."""
    seen = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("mlflow.db", "mlruns")):
            continue
        seen[rel] = (os.readlink(path) if path.is_symlink() else
                     hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else path.stat().st_mode)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("case", HOSTILE)
def test_import_refuses_a_hostile_folder_and_writes_nothing(case, file_run, store, tmp_path):
    mutate, named = HOSTILE[case]
    source, _ = file_run
    folder = tmp_path / "case" / source.name
    shutil.copytree(source, folder, symlinks=True, ignore=shutil.ignore_patterns(imports.MARKER))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the tracking store\n")
    shutil.copy(folder / _model_file(folder), outside / "other.keras")
    shutil.copy(folder / _model_file(folder), folder.parent / "x.keras")  # what "../../x.keras" from model/ names
    shutil.copy(folder / _an_image(folder), outside / "picture.png")
    mutate(folder, outside)
    before = _snapshot(tmp_path)

    result = CliRunner().invoke(main, ["import-run", str(folder)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    assert not client.search_runs(experiments, run_view_type=ViewType.ALL)  # refused before any run
    assert not client.search_logged_models(experiments)
    assert _snapshot(tmp_path) == before  # nothing written in the folder or outside it
    assert not (outside / "created.json").exists()


@pytest.mark.slow
def test_an_import_that_fails_once_its_run_exists_leaves_no_run(file_run, store, tmp_path):
    """The store fails after the checks passed (its artifact folder lies under a file): the run made is
    deleted, FAILED rather than RUNNING, with no model, and the folder is left unmarked."""
    source, _ = file_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder, symlinks=True, ignore=shutil.ignore_patterns(imports.MARKER))
    (tmp_path / "blocker").write_text("")
    client = mlflow.MlflowClient()
    exp = client.create_experiment(json.loads((folder / "run.json").read_text())["experiment"],
                                   artifact_location=str(tmp_path / "blocker" / "artifacts"))
    with pytest.raises(OSError):
        imports.import_run(folder)
    assert not client.search_runs([exp])
    (run,) = client.search_runs([exp], run_view_type=ViewType.ALL)
    assert (run.info.lifecycle_stage, run.info.status) == ("deleted", "FAILED")
    assert not client.search_logged_models([exp]) and not os.path.lexists(folder / imports.MARKER)
