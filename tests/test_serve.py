"""A logged model behind the real `mlflow models serve`: the REST request a user would send.

The Keras flavour logs a tensor signature (float32, shape (-1, 48, 48, 1)), so the scoring server takes
``{"inputs": <nested list N×48×48×1 of pixels 0..255>}`` and answers ``{"predictions": <N×7>}``
(mlflow/pyfunc/scoring_server: ``inputs`` → ``parse_tf_serving_input`` → the wrapper's ``model.predict``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import SMALL_DATA, _free_port

from fer_experiments.data import CLASSES, load_dataset

TOL = 1e-4
START_TIMEOUT = 120  # s: the server imports TensorFlow and loads the model before /ping answers


@pytest.fixture
def serve(tmp_path):
    """Start `mlflow models serve` for a model URI of the current tracking store; yields its base URL."""
    procs = []

    def start(model_uri: str) -> str:
        port = _free_port()
        log = open(tmp_path / "serve.log", "w")
        proc = subprocess.Popen(
            ["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: uvicorn's worker goes down with it
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        log_tail = lambda: (tmp_path / "serve.log").read_text()[-2000:]
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited {proc.returncode}: {log_tail()}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"mlflow models serve not up after {START_TIMEOUT} s: {log_tail()}")

    yield start
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def post(url: str, body: dict) -> tuple[int, dict | str]:
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_served_model_predicts_like_keras(in_shared_store, serve):
    result = in_shared_store.result
    url = serve(result.model_uri)
    faces = load_dataset(SMALL_DATA).splits["test"].x[:3].astype("float32")

    status, answer = post(url, {"inputs": faces.tolist()})
    assert status == 200, answer
    probs = np.asarray(answer["predictions"], dtype="float32")
    assert probs.shape == (3, len(CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=TOL)
    np.testing.assert_allclose(probs, result.model.predict(faces, verbose=0), atol=TOL)

    status, answer = post(url, {"inputs": faces[:, :40].tolist()})  # wrong shape: refused, not guessed
    assert status == 400 and "shape" in answer, answer


def test_serve_load_arguments_and_summary():
    """benchmarks/serve_load.py: bad bounds are refused before anything starts; the summary's figures."""
    from click.testing import CliRunner

    from benchmarks import serve_load

    for args, needle in ((["--clients", "0"], "must be at least 1"), (["--workers", "2", "--workers", "0"], "at least 1"),
                         (["--faces", "0"], "--faces"), (["--cell-seconds", "0"], "--cell-seconds")):
        result = CliRunner().invoke(serve_load.main, args)
        assert result.exit_code == 2 and needle in result.output, result.output
    s = serve_load.summarise([("200", 0.1), ("200", 0.3), ("504", 60.0), ("URLError", 0.01)], seconds=2.0)
    assert (s["requests"], s["ok"], s["errors"], s["ok_per_s"]) == (4, 2, {"504": 1, "URLError": 1}, 1.0)
    assert s["p50_s"] == pytest.approx(0.2) and 50 < s["p99_s"] <= 60  # the 504 counts: its client waited 60 s


@pytest.mark.slow
def test_serve_load_bounded_run(in_shared_store, tmp_path):
    """A tiny bounded run of the load script against the shared run's model: one server, 1 and 3 clients."""
    from click.testing import CliRunner

    from benchmarks import serve_load

    out = tmp_path / "load.json"
    result = CliRunner().invoke(serve_load.main, ["--model-uri", in_shared_store.result.model_uri, "--workers", "1",
                                                  "--clients", "3", "--clients", "1", "--requests", "3", "--faces", "4",
                                                  "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())["runs"]
    assert [(r["workers"], r["clients"], r["requests"], r["ok"], r["errors"]) for r in runs] == [
        (1, 1, 3, 3, {}), (1, 3, 3, 3, {})]
    assert all(0 < r["p50_s"] <= r["p99_s"] < 60 and r["ok_per_s"] > 0 and r["server_peak_rss_mb"] > 100 for r in runs)
