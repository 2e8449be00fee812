"""Stores, servers and model files that refuse or attack: each is one line, exit 2, nothing half-written.

The disk cases mount a real tmpfs (full, or read-only): they need root with CAP_SYS_ADMIN, as the
CI container has, and skip with the reason elsewhere."""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA, all_runs, fresh_store

from fer_experiments.cli import main


def one_line(result) -> str:
    """The command's error line: exactly one, the last, and no traceback (progress lines may come before)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.output
    assert "Traceback" not in result.output, result.output
    return lines[-1]


def test_an_unreachable_tracking_server_is_one_line(tmp_path, monkeypatch, data_cache):
    """Without the probe MLflow retries for minutes, then prints a 136-line traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")  # the discard port: nothing listens
    mlflow.set_tracking_uri("http://127.0.0.1:9/")
    for args in (["train", "--data", SMALL_DATA, "--epochs", "1"],
                 ["evaluate", "models:/m-0123456789abcdef", "--data", SMALL_DATA],
                 ["train", "--resume", "0123456789abcdef"]):
        line = one_line(CliRunner().invoke(main, args))
        assert "tracking server http://127.0.0.1:9/ is unreachable" in line and "MLFLOW_TRACKING_URI" in line


def lambda_model(path: Path, sentinel: Path) -> Path:
    """A model whose Lambda layer, if ever run, leaves `sentinel` behind."""
    inputs = keras.Input((48, 48, 1))
    # A lambda with the path in its code (no closure, so Keras can serialise it): what safe mode refuses.
    touch = eval(f"lambda t: __import__('pathlib').Path({str(sentinel)!r}).touch() or t")
    x = keras.layers.Lambda(touch)(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x)).save(path)
    sentinel.unlink()  # building the model ran it once, here
    return path


@pytest.mark.parametrize("command", ["predict", "explain", "export", "evaluate"])
def test_model_files_that_keras_refuses_are_one_line(store, tmp_path, command):
    face = tmp_path / "face.png"
    keras.utils.save_img(face, np.zeros((48, 48, 1), "uint8"))
    trap = tmp_path / "sentinel"
    code = lambda_model(tmp_path / "lambda.keras", trap)
    not_zip = tmp_path / "text.keras"
    not_zip.write_text("hello")
    for model, needle in ((code, "holds Python code (a Lambda layer)"), (not_zip, "not a zip archive")):
        args = {"predict": ["predict", str(face), "--model-uri", str(model), "--out", str(tmp_path / "p.csv")],
                "explain": ["explain", str(face), "--model-uri", str(model), "--out", str(tmp_path / "x")],
                "export": ["export", str(model), "--out", str(tmp_path / "e.tflite")],
                "evaluate": ["evaluate", str(model), "--data", SMALL_DATA]}[command]
        line = one_line(CliRunner().invoke(main, args))
        assert needle in line and str(model) in line, line
    assert not trap.exists() and not all_runs()


def mount(*args: str):
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here ({done.stderr.strip()}): needs root with CAP_SYS_ADMIN")


def mount_tmpfs(where: Path, size: str):
    where.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))


@pytest.mark.slow
def test_a_read_only_store_is_one_line(tmp_path, monkeypatch, data_cache, empty_store_file):
    """A store on a read-only mount (a bind mount of a written folder, remounted read-only)."""
    written, disk = tmp_path / "written", tmp_path / "ro"
    written.mkdir()
    disk.mkdir()
    fresh_store(written, empty_store_file)
    mount("--bind", str(written), str(disk))
    try:
        mount("-o", "remount,bind,ro", str(disk))
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        line = one_line(CliRunner().invoke(main, ["train", "--data", SMALL_DATA, "--epochs", "1",
                                                  "--diagnostics", "false"]))
        assert "tracking store is read-only" in line and "MLFLOW_TRACKING_URI" in line, line
        assert not all_runs()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_while_logging_the_model_fails_the_run_and_its_model(store, tmp_path, small_cfg):
    """The artifact store fills up between the LoggedModel and the plain .keras copies beside it:
    the run ends FAILED, no READY model stays attached to it, and its checkpoint is freed."""
    import dataclasses

    from fer_experiments.training import backup_dir, train

    cfg = dataclasses.replace(small_cfg, model="custom", epochs=1)
    sizes = train(cfg, verbose=0)  # the same run with room: what it writes before and for its model
    root = Path(mlflow.get_run(sizes.run_id).info.artifact_uri.removeprefix("file://"))
    model_file = next((root / "keras").glob("*.keras")).stat().st_size
    before = sum(p.stat().st_size + 8192 for p in root.rglob("*") if p.is_file() and "keras" not in p.parts)
    disk = tmp_path / "full"
    mount_tmpfs(disk, str(before + int(1.6 * model_file) + (1 << 20)))
    try:
        client = mlflow.MlflowClient()
        exp = client.create_experiment(f"full-{uuid.uuid4().hex[:6]}", artifact_location=str(disk))
        result = CliRunner().invoke(main, ["train", "--data", cfg.data, "--model", "custom", "--epochs", "1",
                                           "--diagnostics", "false", "--batch-size", str(cfg.batch_size),
                                           "--mlflow-experiment", client.get_experiment(exp).name])
        line = one_line(result)
        assert "disk is full" in line, line
        (run,) = client.search_runs([exp])
        assert run.info.status == "FAILED"
        models = mlflow.search_logged_models(experiment_ids=[exp], output_format="list")
        assert models and not [m for m in models if str(m.status).endswith("READY")], [m.status for m in models]
        assert not backup_dir(run.info.run_id).exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
