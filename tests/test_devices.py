"""The JAX backend and data parallelism, each in its own process (a Keras backend is chosen once per
process): training on JAX records in MLflow and its logged model loads back and predicts under JAX;
two virtual CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`) train to the same
validation accuracy as one."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from conftest import fresh_store

from fer_experiments.augment import Batches
from fer_experiments.training import devices

pytest.importorskip("jax")

DATA = "synthetic:1200"  # 96 validation images: one image is 1.04 points
# Within 5 of the 96 validation images: over two devices every batch is full and the feed shuffles
# itself (augment.Batches), so the two runs see the data in another order — two trainings of the same
# recipe, not one computation done twice (measured 0 and 4 images apart on two days).
TOLERANCE = 0.0525
TRAIN = ["train", "--model", "custom", "--data", DATA, "--epochs", "12", "--batch_size", "32", "--precision", "float32",
         "--diagnostics", "false"]


def fer_exp(*args, timeout=600):
    """`fer-exp` on the JAX backend with two virtual CPU devices; a time limit on every call, since a
    collective that never completes would otherwise hang CI."""
    env = {**os.environ, **devices.virtual_cpu_flags(2), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "fer_experiments.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory, data_cache, empty_store_file):
    """The same run on one device and on two, into one SQLite store."""
    root = tmp_path_factory.mktemp("jax")
    uri = fresh_store(root, empty_store_file)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        ids = {n: re.search(r"run (\w+) finished", fer_exp(*TRAIN, "--devices", str(n))).group(1) for n in (1, 2)}
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return uri, ids


@pytest.mark.slow
def test_jax_run_is_recorded_and_its_logged_model_predicts_under_jax(jax_runs, monkeypatch):
    uri, ids = jax_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(ids[1])
    p = run.data.params
    assert (p["keras_backend"], p["device_kind"], p["device_count"], p["devices_used"]) == ("jax", "cpu", "2", "1")
    assert p["jit_compile_used"] == "True"  # the augmentation layers no longer force JAX to run uncompiled
    # The logged model, loaded back in a JAX process, reproduces the logged validation accuracy.
    out = fer_exp("evaluate", run.data.tags["fer.model_uri"], "--data", DATA, "--split", "val", "--tta", "flip",
                  "--no-log", timeout=300)
    shown = float(re.search(r"val: accuracy ([0-9.]+)", out).group(1))
    assert shown == pytest.approx(run.data.metrics["validation_accuracy"], abs=1e-3)
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_two_devices_match_one(jax_runs, monkeypatch):
    uri, ids = jax_runs
    mlflow.set_tracking_uri(uri)
    one, two = (mlflow.get_run(ids[n]) for n in (1, 2))
    assert (two.data.params["devices_used"], two.data.params["batch_per_device"]) == ("2", "16")
    assert one.data.metrics["validation_accuracy"] > 0.8  # both learned: the comparison means something
    assert abs(two.data.metrics["validation_accuracy"] - one.data.metrics["validation_accuracy"]) <= TOLERANCE
    # In-fit validation over two devices (padded, zero-weighted) = the single-device evaluation after it.
    assert two.data.metrics["best_val_accuracy"] == pytest.approx(two.data.metrics["validation_accuracy"], abs=1e-6)
    mlflow.set_tracking_uri(None)


def test_full_batches_split_evenly_and_use_every_image_over_epochs():
    x = np.arange(10, dtype="uint8").reshape(10, 1, 1, 1).repeat(48, 1).repeat(48, 2)
    y = np.arange(10) % 7
    w = np.linspace(0.5, 2, 10).astype("float32")
    feed = Batches(x, y, batch_size=4, num_classes=7, full_batches=True, sample_weight=w, seed=1)
    seen = set()
    for _ in range(4):
        assert len(feed) == 2
        for i in range(len(feed)):
            xb, yb, wb = feed[i]
            assert xb.shape[0] == 4
            ids = xb[:, 0, 0, 0].astype(int)
            np.testing.assert_array_equal(yb, y[ids])
            np.testing.assert_allclose(wb, w[ids])
            seen |= set(ids)
        feed.on_epoch_end()
    assert seen == set(range(10))  # the left-out remainder changes with each epoch's shuffle


def test_several_devices_need_jax_and_a_batch_that_splits(monkeypatch):
    import keras

    from fer_experiments.errors import UserError

    with pytest.raises(UserError, match="needs the JAX backend" if keras.backend.backend() != "jax" else "machine has"):
        devices.resolve(64)
    assert devices.resolve(0) == 1  # auto on a machine without several accelerators
