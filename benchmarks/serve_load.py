"""A logged model behind the real `mlflow models serve`, loaded by concurrent clients on 127.0.0.1:

    python -m benchmarks.serve_load --out benchmarks/results/serve_load.json   # 2 servers × 3 cells, minutes
    python -m benchmarks.serve_load --model-uri models:/m-<id> --workers 1 --workers 4 --timeout 120

Without --model-uri a tiny model is trained first (the default `custom_aug` network, 1 epoch on 300
synthetic images: serving cost does not depend on what it learnt) in a throwaway SQLite store. Per
--workers value one server (`--workers W --timeout T`; MLflow's defaults 1 and 60 s, the timeout also
MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT); per --clients value, that many threads start together and send
requests of --faces crops (the README's body, `{"inputs": N×48×48×1 pixels}`) until --requests (at least
one per client) are sent or --cell-seconds have passed, then wait for the answers: a cell ends within
cell-seconds + timeout + CLIENT_SLACK. So 200 clients are a 200-request burst, like the one that got
HTTP 504s. Latency: send to answer, errors included (a 504 is what its client waited); requests/s: the
200s over the cell's time; server memory: the peak of all its processes, sampled twice a second.
The clients share the server's CPUs; the load average before and after is recorded with the figures.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import click
import numpy as np

START_TIMEOUT = 180  # s: the server imports TensorFlow and loads the model before /ping answers
CLIENT_SLACK = 30  # s past the server's timeout before a client gives up on an answer itself


def train_tiny_model(root: Path) -> str:
    """models:/… of a 1-epoch model in a fresh SQLite store under root (MLFLOW_TRACKING_URI set to it)."""
    from fer_experiments.config import build_config
    from fer_experiments.training import train

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"  # the server inherits it
    cfg = build_config(None, data="synthetic:1200", epochs=1, limit=300, diagnostics=False)
    return train(cfg, verbose=0).model_uri


def request_body(faces: int) -> bytes:
    """`faces` synthetic 48×48 test faces as the scoring server's JSON input, encoded once for every request."""
    from fer_experiments.data import load_dataset

    x = load_dataset("synthetic:1200").splits["test"].x
    x = np.resize(x, (faces, *x.shape[1:])).astype("float32")  # repeated if more faces are asked for than exist
    return json.dumps({"inputs": x.tolist()}).encode()


def start_server(model_uri: str, workers: int, timeout: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--timeout", str(timeout)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: uvicorn's workers go down with it
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"mlflow models serve exited {proc.returncode}: {log.read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise click.ClickException(f"mlflow models serve not up after {START_TIMEOUT} s: {log.read_text()[-1500:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """The server's whole process group, gone before the next server starts. `mlflow models serve`
    exits at once on SIGTERM, but uvicorn and its workers shut down gracefully, finishing every request
    still running (those already answered 504 too: the server cannot stop a predict it abandoned), so
    the group is killed outright after a short grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            proc.poll()  # reaps our own child; the group's others are reaped by init
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def post(url: str, body: bytes, timeout: float) -> tuple[str, float]:
    """(outcome, seconds): outcome "200", another HTTP status, or the client-side error's name."""
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            outcome = str(r.status)
    except urllib.error.HTTPError as exc:
        outcome = str(exc.code)
    except OSError as exc:  # refused, reset, or no answer within the client's own timeout
        outcome = type(getattr(exc, "reason", exc)).__name__
    return outcome, time.perf_counter() - start


def load(url: str, body: bytes, clients: int, requests: int, cell_seconds: float, timeout: float,
         server_pid: int | None = None) -> dict:
    """One cell: `clients` threads share `requests` tickets (at least one each) and the time bound;
    meanwhile the server's memory (all its processes) is sampled, for the peak."""
    tickets = iter(range(max(requests, clients)))
    lock, results, done = threading.Lock(), [], [0.0]
    start_line = threading.Barrier(clients + 1)

    def client():
        start_line.wait()
        while True:
            with lock:
                if time.perf_counter() - t0 > cell_seconds or next(tickets, None) is None:
                    return
            answer = post(url, body, timeout)
            with lock:
                results.append(answer)
                done[0] = time.perf_counter()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start_line.wait()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, server_rss(server_pid))
        time.sleep(0.5)
    return summarise(results, done[0] - t0) | {"clients": clients, "server_peak_rss_mb": round(peak / 2**20)}


def server_rss(pid: int | None) -> int:
    """Resident bytes of `pid` and its descendants (uvicorn and its workers), 0 if unknown."""
    import psutil

    total = 0
    try:
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)] if pid else []:
            total += p.memory_info().rss
    except psutil.Error:  # a process exited meanwhile: this sample is low, the next one counts
        pass
    return total


def summarise(results: list[tuple[str, float]], seconds: float) -> dict:
    """requests, ok, errors by kind, requests/s (200s only) and p50/p99 latency over every answer."""
    latencies = np.array([s for _, s in results]) if results else np.zeros(1)
    errors: dict[str, int] = {}
    for outcome, _ in results:
        if outcome != "200":
            errors[outcome] = errors.get(outcome, 0) + 1
    ok = len(results) - sum(errors.values())
    return {"requests": len(results), "ok": ok, "errors": errors, "seconds": round(seconds, 2),
            "ok_per_s": round(ok / seconds, 2) if seconds else 0.0,
            "p50_s": round(float(np.percentile(latencies, 50)), 3), "p99_s": round(float(np.percentile(latencies, 99)), 3)}


def serve_and_load(model_uri: str, workers: int, clients_list, body: bytes, requests: int, cell_seconds: float,
                   timeout: int, log: Path) -> list[dict]:
    """One server, then a cell per --clients value, smallest first: the burst last, since the requests it
    abandons (504) still run in the server until it is stopped."""
    proc, url = start_server(model_uri, workers, timeout, log)
    runs = []
    try:
        # Warm-up, untimed: the first predict of each worker traces the model's graph.
        load(url, body, 2 * workers, 2 * workers, cell_seconds, timeout + CLIENT_SLACK)
        for clients in clients_list:
            cell = load(url, body, clients, requests, cell_seconds, timeout + CLIENT_SLACK, proc.pid)
            runs.append({"workers": workers} | cell)
            click.echo(markdown({"runs": runs[-1:]}).splitlines()[-1], err=True)
    finally:
        stop_server(proc)
    return runs


def markdown(results: dict) -> str:
    lines = ["| workers | clients | requests | 200 | errors | requests/s | p50 s | p99 s | server memory (peak) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        errors = ", ".join(f"{n}× {k}" for k, n in sorted(r["errors"].items())) or "0"
        lines.append(f"| {r['workers']} | {r['clients']} | {r['requests']} | {r['ok']} | {errors} | {r['ok_per_s']} "
                     f"| {r['p50_s']} | {r['p99_s']} | {r.get('server_peak_rss_mb', '?')} MB |")
    return "\n".join(lines)


def _positive(ctx, param, values):
    if any(v < 1 for v in values):
        raise click.BadParameter(f"must be at least 1, got {', '.join(map(str, values))}")
    return values


@click.command()
@click.option("--model-uri", default=None, help="a model of the current tracking store [a tiny one, trained first]")
@click.option("--workers", "workers_list", multiple=True, type=int, default=(1, 2), show_default=True,
              callback=_positive, help="mlflow models serve --workers, repeatable: one server each")
@click.option("--clients", "clients_list", multiple=True, type=int, default=(1, 20, 200), show_default=True,
              callback=_positive, help="concurrent clients, repeatable")
@click.option("--faces", default=64, show_default=True, type=click.IntRange(1, 4096), help="face crops per request")
@click.option("--requests", default=20, show_default=True, type=click.IntRange(1),
              help="requests per cell (at least one per client)")
@click.option("--cell-seconds", default=30.0, show_default=True, type=click.FloatRange(1),
              help="no request is sent after this many seconds of a cell")
@click.option("--timeout", default=60, show_default=True, type=click.IntRange(1),
              help="mlflow models serve --timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT), seconds")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="JSON file for every figure")
def main(model_uri, workers_list, clients_list, faces, requests, cell_seconds, timeout, out):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": os.getloadavg()},
               "versions": {p: version(p) for p in ("mlflow", "keras")},
               "command": " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]]),
               "model": model_uri or "custom_aug, 1 epoch on 300 synthetic images (trained by this command)",
               "faces_per_request": faces, "requests_per_cell": requests, "cell_seconds": cell_seconds,
               "server_timeout_s": timeout, "runs": []}
    try:
        model_uri = model_uri or train_tiny_model(tmp)
        body = request_body(faces)
        results["request_bytes"] = len(body)
        for workers in workers_list:
            click.echo(f"== mlflow models serve --workers {workers} --timeout {timeout}", err=True)
            results["runs"] += serve_and_load(model_uri, workers, sorted(clients_list), body, requests, cell_seconds,
                                              timeout, tmp / f"serve-{workers}.log")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the throwaway store and the server logs
    results["machine"]["load_after"] = os.getloadavg()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1) + "\n")
    click.echo(markdown(results))


if __name__ == "__main__":
    main()
