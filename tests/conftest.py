"""Shared fixtures: a temp MLflow store per test, one synthetic data cache per session, and the
real default config shrunk for speed (big_vision's `runlocal` idea)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402
import pytest  # noqa: E402

SMALL_DATA = "synthetic:1200"  # ~860 train / 96 val / 240 test images: seconds per epoch


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("fer_cache")
    os.environ["FER_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, data_cache):
    """A fresh SQLite tracking store with artifacts under tmp_path (MLflow's defaults, relocated)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture
def small_cfg():
    """The real default config, shrunk: tiny synthetic data, two epochs."""
    from fer_experiments.config import build_config

    return build_config(None, data=SMALL_DATA, epochs=2, batch_size=32)


def all_runs(experiment_names=None):
    client = mlflow.MlflowClient()
    exps = client.search_experiments()
    ids = [e.experiment_id for e in exps if experiment_names is None or e.name in experiment_names]
    return client.search_runs(ids) if ids else []
