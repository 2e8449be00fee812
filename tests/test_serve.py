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
