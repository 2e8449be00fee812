"""Studies through Optuna's gRPC storage proxy (`fer-exp study-server`): a real PostgreSQL server, a
real study server process in front of it and real worker processes, one of them SIGKILLed mid-trial."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
from conftest import _free_port, all_runs
from test_tuning import _worker

from fer_experiments.studies.leases import LEASE


def _serve(url: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "fer_experiments.cli", "study-server", "--storage", url,
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proxy = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
    try:
        proxy.wait_server_ready(timeout=60)
    except ConnectionError:
        server.kill()
        pytest.fail(server.communicate()[0][-3000:])
    return server


def _running(url: str, study: str) -> list:
    try:
        return optuna.load_study(study_name=study, storage=url).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    except KeyError:  # the study does not exist yet
        return []


def _wait(what, procs, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.5)
    for p in procs:
        p.kill()
    pytest.fail("\n".join(p.communicate()[0][-3000:] for p in procs))


@pytest.mark.slow
def test_a_killed_workers_trial_through_the_proxy_is_failed_and_retried(mlflow_server, postgres):
    url, port = postgres(), _free_port()
    server = _serve(url, port)
    grpc, fast = f"grpc://127.0.0.1:{port}", {"FER_HEARTBEAT_S": "1"}
    try:
        victim = _worker(grpc, "proxied", 2, fast, epochs=50)  # killed long before its trial would end
        _wait(lambda: any(t.user_attrs.get("mlflow_run_id") for t in _running(url, "proxied")), [victim, server])
        survivor = _worker(grpc, "proxied", 2, fast)
        _wait(lambda: len(_running(url, "proxied")) == 2, [victim, survivor, server])
        # the leases travel through the proxy: the database holds them, renewed
        leases = [t.system_attrs.get(LEASE) for t in _running(url, "proxied")]
        assert all(leases) and {lease[0].rsplit("|", 1)[1] for lease in leases} == {str(victim.pid), str(survivor.pid)}
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        out = survivor.communicate(timeout=600)[0]
        assert survivor.returncode == 0, out[-3000:]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    study = optuna.load_study(study_name="proxied", storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1 and "RUNNING" not in states, states
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed.number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == failed.params
    dead_run = mlflow.get_run(failed.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["optuna.trial_state"] == "FAIL"
    assert not [r.info.run_name for r in all_runs() if r.info.status == "RUNNING"]


def test_study_server_refuses_what_it_cannot_serve(tmp_path):
    from click.testing import CliRunner

    from fer_experiments.cli import main

    for storage in (f"journal:{tmp_path / 'j.log'}", "grpc://127.0.0.1:1", "nothing"):
        out = CliRunner().invoke(main, ["study-server", "--storage", storage])
        assert out.exit_code == 2 and "is not a database URL" in out.output, out.output
        assert len(out.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_scaling_benchmark_runs_both_storages_small(tmp_path):
    import json

    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.study_scale", "--workers", "2", "--per-worker", "2",
                           "--sleep", "0", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["workers"], r["trials"], r["complete"]) for r in rows] == [
        ("direct", 2, 4, True), ("proxy", 2, 4, True)]
    assert all(r["peak_connections"] >= 1 and r["trials_per_s"] > 0 and r["ask_ms_median"] > 0 for r in rows)
    assert "| study server (gRPC proxy) | 2 | 4 |" in done.stdout
