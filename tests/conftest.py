"""Shared fixtures: a temp MLflow store per test, one synthetic data cache per session, the real
default config shrunk for speed (big_vision's `runlocal` idea), and one real training run per
session that the tests of export, serve, evaluate, record and the recipes read (`shared_run`)."""
from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow
import pytest

SMALL_DATA = "synthetic:1200"  # ~860 train / 96 val / 240 test images: seconds per epoch


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("fer_cache")
    os.environ["FER_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def empty_store_file(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow SQLite database, made once: creating one runs MLflow's schema
    migrations (seconds), copying it does not."""
    root = tmp_path_factory.mktemp("empty_store")
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return root / "mlflow.db"


def fresh_store(folder: Path, template: Path) -> str:
    """`folder`/mlflow.db as a copy of the empty template, its Default experiment's artifacts under
    `folder`/mlruns (where MLflow would have put them had it created the store there)."""
    import shutil
    import sqlite3

    shutil.copyfile(template, folder / "mlflow.db")
    with sqlite3.connect(folder / "mlflow.db") as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str((folder / "mlruns" / "0").resolve()),))
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path, monkeypatch, data_cache, empty_store_file):
    """A fresh SQLite tracking store with artifacts under tmp_path (MLflow's defaults, relocated)."""
    monkeypatch.chdir(tmp_path)
    uri = fresh_store(tmp_path, empty_store_file)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(leaked, raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture
def small_cfg():
    """The real default config, shrunk: tiny synthetic data, two epochs, no end-of-run diagnostics
    (TTA, Grad-CAM, diagram): the tests that check those turn them on."""
    from fer_experiments.config import build_config

    return build_config(None, data=SMALL_DATA, epochs=2, batch_size=32, diagnostics=False)


SHARED_PRESET = "fer_compact_long"  # crop 40, every augmentation with erasing, one-cycle SGD: the most paths


@dataclass
class SharedRun:
    uri: str      # its tracking store
    root: Path    # the store's folder (artifacts under mlruns/)
    preset: str
    cfg: object
    result: object  # training.TrainResult


def _use_store(mp: pytest.MonkeyPatch, root: Path, uri: str) -> None:
    mp.chdir(root)
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        mp.delenv(leaked, raising=False)
    mlflow.set_tracking_uri(uri)


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, data_cache, empty_store_file) -> SharedRun:
    """One real training run for the session, with every diagnostic, in its own SQLite store: the
    `fer_compact_long` preset shrunk (2 epochs, 300 images per split) plus mixup, so the batch feed,
    crops, erasing, the schedule and ten-crop TTA are all in it. Read-only for the tests that use it
    (through `in_shared_store`); runs they add (evaluate, export) go to the same store."""
    from fer_experiments.config import build_config
    from fer_experiments.training import train

    root = tmp_path_factory.mktemp("shared_store")
    uri = fresh_store(root, empty_store_file)
    with pytest.MonkeyPatch.context() as mp:
        _use_store(mp, root, uri)
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        cfg = build_config(SHARED_PRESET, data=SMALL_DATA, epochs=2, limit=300, mixup=0.2)
        result = train(cfg, preset=SHARED_PRESET, verbose=0)
        mlflow.set_tracking_uri(None)
    return SharedRun(uri, root, SHARED_PRESET, cfg, result)


@pytest.fixture
def in_shared_store(shared_run, monkeypatch) -> SharedRun:
    """The shared run's store is the current one (MLFLOW_TRACKING_URI, cwd) for this test."""
    _use_store(monkeypatch, shared_run.root, shared_run.uri)
    yield shared_run
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def all_runs(experiment_names=None):
    client = mlflow.MlflowClient()
    exps = client.search_experiments()
    ids = [e.experiment_id for e in exps if experiment_names is None or e.name in experiment_names]
    return client.search_runs(ids) if ids else []


def _free_port() -> int:
    from benchmarks.postgres import free_port

    return free_port()


PG_PASSWORD = "pg-Secret-7f3a9"  # the password of the roles below, which the tests grep records for
PG_PASSWORD_ROLES = ("mlflow", "optuna")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server from Debian's `postgresql` package, on 127.0.0.1.

    Skips with the reason where PostgreSQL is not installed — except under CI, where it must run.
    Yields a function that creates a fresh database and returns its SQLAlchemy URL."""
    from benchmarks.postgres import Postgres, bindir

    if not bindir():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed but CI=true: .ci/run must apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql) — distributed-study tests skipped")
    # `fer` is trusted; the README's roles `mlflow` and `optuna` need their password (first match wins).
    hba = f"host all {','.join(PG_PASSWORD_ROLES)} 127.0.0.1/32 scram-sha-256\n"
    with Postgres(hba_first=hba) as pg:
        for role in PG_PASSWORD_ROLES:
            pg.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        yield pg.database


def _start_mlflow_server(tmp_path, template: Path, *extra, env=None):
    """A real `mlflow server` (SQLite backend, local artifacts) on 127.0.0.1; returns (process, uri)."""
    import shutil
    import subprocess
    import time
    import urllib.request

    shutil.copyfile(template, tmp_path / "server.db")  # an empty, migrated store: the server starts sooner
    port = _free_port()
    proc = subprocess.Popen(["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts"), *extra],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
                            env={**os.environ, **(env or {})})
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            return proc, uri
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")


def _use_server(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):  # set_experiment exports these
        monkeypatch.delenv(leaked, raising=False)
    mlflow.set_tracking_uri(uri)


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch, data_cache, empty_store_file):
    """A real `mlflow server`: several worker processes share it."""
    monkeypatch.chdir(tmp_path)
    proc, uri = _start_mlflow_server(tmp_path, empty_store_file)
    _use_server(monkeypatch, uri)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)
    mlflow.set_tracking_uri(None)


AUTH_ADMIN = ("admin", "fer-admin-pw-1234")


@pytest.fixture
def mlflow_auth_server(tmp_path, monkeypatch, data_cache, empty_store_file):
    """A real `mlflow server --app-name basic-auth` (MLflow's basic-auth app, its user database in
    tmp_path): the README's shared tracking server. Yields its URI; the admin is AUTH_ADMIN."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{tmp_path / 'basic_auth.db'}\n"
                      f"admin_username = {AUTH_ADMIN[0]}\nadmin_password = {AUTH_ADMIN[1]}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    proc, uri = _start_mlflow_server(tmp_path, empty_store_file, "--app-name", "basic-auth",
                                     env={"MLFLOW_AUTH_CONFIG_PATH": str(config),
                                          "MLFLOW_FLASK_SERVER_SECRET_KEY": "fer-test-csrf-secret"})
    _use_server(monkeypatch, uri)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)
    mlflow.set_tracking_uri(None)


# The `slow` marker follows cost: a test that trains a model or spawns a process is marked slow, and
# nothing else is. Enforced here: at collection, a test whose own source or any of whose fixtures'
# source trains, tunes, starts a server or spawns a process needs the marker; and a Keras `fit`
# during an unmarked test fails it.
COSTLY = re.compile(r"\bsubprocess\.|\bPopen\(|\b_worker\(|\brun_and_kill\(|\btrain\(|\btune\(|\.fit\(|"
                    r"_start_mlflow_server\(|\bfer_exp\(|\bPostgres\(")


def _costly(func) -> bool:
    try:
        return bool(COSTLY.search(inspect.getsource(func)))
    except (OSError, TypeError):  # pytest's own fixtures
        return False


def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        if item.get_closest_marker("slow") or not hasattr(item, "function"):
            continue
        defs = getattr(item, "_fixtureinfo", None)
        fixtures = [name for name, fixture_defs in (defs.name2fixturedefs.items() if defs else ())
                    if any(_costly(d.func) for d in fixture_defs)]
        if _costly(item.function) or fixtures:
            wrong.append(f"{item.nodeid}{' (fixtures ' + ', '.join(fixtures) + ')' if fixtures else ''}")
    if wrong:
        raise pytest.UsageError("these train or spawn a process: mark them @pytest.mark.slow\n" + "\n".join(wrong))


@pytest.fixture(autouse=True)
def _unmarked_tests_do_not_train(request):
    if request.node.get_closest_marker("slow"):
        yield
        return
    import keras

    calls = []
    fit = keras.Model.fit

    def counted(self, *args, **kwargs):
        calls.append(self.name)
        return fit(self, *args, **kwargs)

    keras.Model.fit = counted
    try:
        yield
    finally:
        keras.Model.fit = fit
    if calls:
        pytest.fail(f"{request.node.nodeid} trains ({', '.join(calls)}.fit): mark it @pytest.mark.slow", pytrace=False)
