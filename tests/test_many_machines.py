"""The README's "Many machines" block, run as written: PostgreSQL behind a basic-auth `mlflow server`
whose artifacts go to a folder only the server writes (`--artifacts-destination`), a worker user, and
two "machines" — working directories of their own that reach the server over HTTP only — one tuning
through `mlflow run -e tune` with the database password in PGPASSWORD, one training with `fer-exp train`;
a third directory then evaluates the trained model through `models:/`.

Only hosts, ports, placeholders, the project's path and the study's size are substituted; then every
record the runs left (params, tags, artifacts, the console) is searched for the secrets."""
from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import PG_PASSWORD, SMALL_DATA, _free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PW, WORKER_PW, FLASK_SECRET = "admin-Secret-31c8e", "worker-Secret-9d2b4", "flask-Secret-55e0a"
SECRETS = (PG_PASSWORD, ADMIN_PW, WORKER_PW, FLASK_SECRET)


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Many machines", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def substituted(block: str, pg_port: int, port: int, tmp_path: Path) -> str:
    for old, new in {"@db/": f"@127.0.0.1:{pg_port}/", "http://tracking-host:5000": f"http://127.0.0.1:{port}",
                     "--host 0.0.0.0": f"--host 127.0.0.1 --port {port} --workers 1",
                     "s3://bucket/mlflow": str(tmp_path / "artifacts"), "<a long secret>": ADMIN_PW,
                     "<another secret>": FLASK_SECRET, "<password>": WORKER_PW,
                     "<the database password>": PG_PASSWORD, "<the optuna database password>": PG_PASSWORD,
                     '"fer2013"': '"fer2013-synthetic"', "--experiment-name fer2013 ": "--experiment-name fer2013-synthetic ",
                     "mlflow run . -e tune": f"mlflow run {ROOT} -e tune",
                     "-P model=custom_aug": "-P model=custom", "-P study=fer-big": "-P study=fer-small",
                     "-P n_trials=100": f"-P n_trials=1 -P epochs=1 -P data={SMALL_DATA} -P pruner=none "
                                        "-P diagnostics=false -P confirm_top=0"}.items():
        assert old in block, f"the README's many-machines block no longer has {old!r}: update this test"
        block = block.replace(old, new)
    return block


def parts(block: str) -> dict[str, str]:
    """The block's three roles: the server (once), the admin's user creation, a worker."""
    once, admin, worker, _watch = re.split(r"^# (?:as admin|on every machine|watch the study).*$", block, flags=re.M)
    once = "\n".join(line for line in once.splitlines() if not line.startswith("pip install"))
    return {"server": once, "admin": admin, "worker": worker}


@pytest.mark.slow
def test_readme_many_machines_block_runs_as_written_and_records_no_secret(postgres, tmp_path, monkeypatch, data_cache):
    for owner, name in (("mlflow", "mlflow"), ("mlflow", "mlflow_auth"), ("optuna", "optuna")):
        url = postgres(owner=owner, name=name)
    pg_port = int(url.rsplit(":", 1)[1].split("/")[0])
    port = _free_port()
    script = parts(substituted(readme_block(), pg_port, port, tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PG"))}
    server = subprocess.Popen(["bash", "-ec", script["server"]], cwd=tmp_path, env=env, start_new_session=True,
                              stdout=open(tmp_path / "server.out", "w"), stderr=subprocess.STDOUT)
    try:
        uri = f"http://127.0.0.1:{port}"
        for _ in range(360):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.out").read_text()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("the README's server did not start: " + (tmp_path / "server.out").read_text()[-3000:])
        admin = subprocess.run(["bash", "-ec", script["admin"]], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=120)
        assert admin.returncode == 0, admin.stderr[-2000:]
        machines = [tmp_path / name for name in ("machine-a", "machine-b", "machine-c")]
        for folder in machines:
            folder.mkdir()
        worker = subprocess.run(["bash", "-ec", script["worker"]], cwd=machines[0], env=env, capture_output=True,
                                text=True, timeout=600)
        console = worker.stdout + worker.stderr
        assert worker.returncode == 0, console[-4000:]
        assert "1 of 1 trials" in console or "finished 1/1" in console, console[-3000:]
        # Another machine trains, with the same environment as the README's worker.
        exports = "\n".join(line for line in script["worker"].splitlines() if line.startswith("export "))
        trainer = subprocess.run(["bash", "-ec", f"{exports}\nfer-exp train --model custom --data {SMALL_DATA} --epochs 1 "
                                  f"--mlflow-experiment fer2013-synthetic"], cwd=machines[1], env=env,
                                 capture_output=True, text=True, timeout=600)
        assert trainer.returncode == 0, trainer.stderr[-3000:]
        console += trainer.stdout + trainer.stderr
        model_uri = re.search(r"^model: (models:/\S+)", trainer.stdout, re.M).group(1)
        # A third machine reads the model back through the server alone.
        reader = subprocess.run(["bash", "-ec", f"{exports}\nfer-exp evaluate {model_uri} --data {SMALL_DATA} --split test "
                                 "--no-log"], cwd=machines[2], env=env, capture_output=True, text=True, timeout=300)
        assert reader.returncode == 0, reader.stderr[-3000:]
        shown = float(re.search(r"test: accuracy ([0-9.]+)", reader.stdout).group(1))
        # The machines' folders hold nothing: every record went to the server.
        assert [p for folder in machines for p in folder.rglob("*")] == []

        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PW)
        client = mlflow.MlflowClient(tracking_uri=uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        trials = [r for r in runs if r.data.tags.get("optuna.trial_state") == "COMPLETE"]
        assert len(trials) == 1 and trials[0].data.tags["optuna.study_name"] == "fer-small"
        trained = next(r for r in runs if r.data.tags.get("fer.model_uri") == model_uri)
        assert shown == pytest.approx(trained.data.metrics["test_accuracy"], abs=1e-3)
        # Models and figures arrived through the server, in the folder only it writes.
        stored = {p.name for p in (tmp_path / "artifacts").rglob("*") if p.is_file()}
        assert {"confusion_matrix.png", "training_curves.png"} <= stored, sorted(stored)[:40]
        assert any(name.endswith(".keras") for name in stored), sorted(stored)[:40]
        records = [console]
        for run in runs:
            records += [f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items()]
        records += [p.read_bytes().decode("latin-1") for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
        assert len(records) > 50  # params, tags and artifact files were searched, not an empty list
        for secret in SECRETS:
            assert not [r[:200] for r in records if secret in r], f"{secret} was recorded"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_tune_under_mlflow_run_warns_of_a_password_in_its_storage_url(store, monkeypatch):
    from click.testing import CliRunner

    from fer_experiments.cli import main

    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef")  # what `mlflow run` hands its command
    url = f"postgresql://optuna:{PG_PASSWORD}@127.0.0.1:1/optuna"
    result = CliRunner().invoke(main, ["tune", "--data", SMALL_DATA, "--epochs", "1", "--storage", url])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: `mlflow run` has recorded this storage URL"), lines
    assert "PGPASSWORD" in lines[0] and "0123456789abcdef" in lines[0]
    assert lines[1].startswith("error: storage postgresql://optuna:***@127.0.0.1:1/optuna is unreachable"), lines
    assert PG_PASSWORD not in result.output


@pytest.mark.slow
def test_a_user_writing_into_another_users_experiment_is_one_line(mlflow_auth_server, monkeypatch):
    from click.testing import CliRunner
    from conftest import AUTH_ADMIN
    from mlflow.server import get_app_client

    from fer_experiments.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", AUTH_ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", AUTH_ADMIN[1])
    get_app_client("basic-auth", tracking_uri=mlflow_auth_server).create_user("other", WORKER_PW)
    mlflow.MlflowClient().create_experiment("admins-only")  # default_permission = READ for everyone else
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "other")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WORKER_PW)
    result = CliRunner().invoke(main, ["train", "--data", SMALL_DATA, "--epochs", "1", "--diagnostics", "false",
                                       "--mlflow-experiment", "admins-only"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: the tracking server") and "'other'" in lines[-1], result.output
    assert "admins-only" in lines[-1] and "EDIT" in lines[-1] and "Traceback" not in result.output
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", AUTH_ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", AUTH_ADMIN[1])
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")
