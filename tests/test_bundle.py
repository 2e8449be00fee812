"""`fer-exp bundle`: a folder made here installs into a fresh virtualenv with `pip --no-index` (no
network), trains on the JAX backend with neither TensorFlow nor MLflow installed, and its run folder is
imported back into MLflow as a run on the same data."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from fer_experiments.cli import main
from fer_experiments.data import load_dataset

DATA = "synthetic:600"


@pytest.mark.slow
def test_a_bundle_trains_offline_without_tensorflow_or_mlflow_and_is_imported_back(store, tmp_path):
    out = tmp_path / "bundle"
    made = CliRunner().invoke(main, ["bundle", "--data", DATA, "--out", str(out), "--preset", "custom"])
    assert made.exit_code == 0, made.output
    assert (out / "data" / "data.npz").is_file() and not list(out.rglob("*.png"))  # arrays, not an image tree
    wheels = {p.name.split("-")[0].lower() for p in (out / "wheels").glob("*.whl")}
    assert {"fer_experiments", "keras", "jax", "jaxlib"} <= wheels and not wheels & {"tensorflow", "mlflow"}, wheels
    assert not [w for w in wheels if w.startswith(("nvidia", "jax_cuda"))], wheels  # a CPU bundle: no CUDA
    # The node: no network for pip, no MLflow server, only what the bundle brings (a bare environment).
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "FER_CACHE_DIR": str(tmp_path / "node-cache"),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    node = subprocess.run(["bash", str(out / "run.sh"), "--epochs", "1", "--diagnostics", "false"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert node.returncode == 0, node.stdout[-2000:] + node.stderr[-3000:]
    python = out / ".venv" / "bin" / "python"
    for absent in ("tensorflow", "mlflow", "optuna"):
        probe = subprocess.run([str(python), "-c", f"import {absent}"], capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, absent
    folder = Path(re.search(r"^run folder: (\S+)", node.stdout, re.M).group(1))
    assert folder.parent == out / "runs"
    imported = CliRunner().invoke(main, ["import-run", str(folder)])
    assert imported.exit_code == 0, imported.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED" and run.info.run_id in imported.output
    p, tags = run.data.params, run.data.tags
    assert (p["keras_backend"], p["model"], tags["fer.synthetic"]) == ("jax", "custom", "true")
    # The packed data is the source's data: the same content digest as the synthetic set itself.
    assert p["dataset_digest"] == load_dataset(DATA).digest
    assert 0 <= run.data.metrics["test_accuracy"] <= 1


def test_bundle_refuses_a_folder_in_use_and_an_unknown_preset_in_one_line(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    for args, words in ((["--out", str(tmp_path / "used")], "is not empty"),
                        (["--out", str(tmp_path / "new"), "--preset", "nonsense"], "unknown preset 'nonsense'")):
        result = CliRunner().invoke(main, ["bundle", "--data", DATA, *args])
        assert result.exit_code == 2 and result.output.startswith("error:") and words in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path / "used") == ["notes.txt"]


@pytest.mark.parametrize("accelerator, jax", [("cpu", "jax<"), ("cuda12", "jax[cuda12]<"), ("cuda13", "jax[cuda13]<")])
def test_the_node_requirements_name_the_accelerators_jax_and_leave_the_tracking_stack_out(accelerator, jax):
    from fer_experiments import bundle

    reqs = bundle.node_requirements(accelerator)
    jax_lines = [r for r in reqs if r.startswith("jax")]
    assert len(jax_lines) == 1 and jax_lines[0].startswith(jax), reqs  # the gpu extra's cuda12 never leaks into cpu
    assert not {bundle._name(r) for r in reqs} & {"tensorflow", "tensorflow-cpu", "mlflow", "optuna"}, reqs
