"""How many study workers one PostgreSQL holds, directly and through the study server (gRPC proxy).

    python -m benchmarks.study_scale --out benchmarks/results/study_scale.json   # ~5 min on 2 cores

A study of a trivial objective (no training: `--sleep` seconds and 3 reported intermediate values per
trial) with 4 / 16 / 64 worker processes on 127.0.0.1, against a throwaway PostgreSQL (`postgres.py`)
directly (`postgresql://`) and through `fer-exp study-server` (`grpc://`). Every worker does the same
quota of trials; they start together (a start file, after their imports). Per configuration: trials per
second over the whole study, median and 95th-percentile ask / tell latency over every trial, and the
peak number of connections to the study's database (`pg_stat_activity`, sampled every 0.2 s). Bounded:
a configuration stops at `--limit-s`, and what finished by then is what is reported (`complete` says so).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click


def _worker(storage: str, study: str, start: str, trials: int, sleep: float, limit: float, out: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage.startswith("grpc://"):  # Optuna's plain client: the proxy itself is what is measured
        from fer_experiments.studies.grpc_proxy import parse

        host, port = parse(storage)
        backend = optuna.storages.GrpcStorageProxy(host=host, port=port)
    else:
        backend = optuna.storages.RDBStorage(storage)
    s = optuna.load_study(study_name=study, storage=backend)
    while not Path(start).exists():
        time.sleep(0.01)
    asks, tells, began = [], [], time.time()
    deadline = time.monotonic() + limit
    for _ in range(trials):
        if time.monotonic() > deadline:
            break
        t = time.perf_counter()
        trial = s.ask()
        asks.append(time.perf_counter() - t)
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(3):
            trial.report(x * (step + 1), step)
        time.sleep(sleep)
        t = time.perf_counter()
        s.tell(trial, x)
        tells.append(time.perf_counter() - t)
    Path(out).write_text(json.dumps({"asks": asks, "tells": tells, "began": began, "ended": time.time()}))


def _peak_connections(dsn: str, db: str, procs, stop_at: float) -> int:
    import psycopg

    peak = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:  # one sample at least: the workers are connected (and waiting) when this starts
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                             (db,)).fetchone()[0]
            peak = max(peak, n)
            if time.monotonic() > stop_at or all(p.poll() is not None for p in procs):
                return peak
            time.sleep(0.2)


def _one(pg, mode: str, workers: int, per_worker: int, sleep: float, limit: float, tmp: Path) -> dict:
    import optuna

    url = pg.database()
    db = url.rsplit("/", 1)[1]
    name = f"scale-{mode}-{workers}"
    optuna.create_study(study_name=name, storage=url, direction="maximize")
    server = None
    storage = url
    if mode == "proxy":
        from benchmarks.postgres import free_port

        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "fer_experiments.cli", "study-server", "--storage", url,
                                   "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(timeout=60)
        storage = f"grpc://127.0.0.1:{port}"
    start = tmp / f"{name}.start"
    outs = [tmp / f"{name}-{i}.json" for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.study_scale", "--worker", storage, name, str(start),
                               str(per_worker), str(sleep), str(limit), str(out)]) for out in outs]
    time.sleep(5 + workers * 0.25)  # their imports and connections, before the clock starts
    dsn = f"postgresql://fer@127.0.0.1:{pg.port}/postgres"
    before = _peak_connections(dsn, db, [], 0)  # the workers connected, waiting for the start
    start.touch()
    peak = max(before, _peak_connections(dsn, db, procs, time.monotonic() + limit + 60))
    for p in procs:
        try:
            p.wait(timeout=limit + 60)
        except subprocess.TimeoutExpired:
            p.kill()
    if server:
        server.terminate()
        server.wait(timeout=30)
    runs = [json.loads(o.read_text()) for o in outs if o.exists()]
    asks = [a for r in runs for a in r["asks"]]
    tells = [t for r in runs for t in r["tells"]]
    wall = max(r["ended"] for r in runs) - min(r["began"] for r in runs)
    done = len([t for t in optuna.load_study(study_name=name, storage=url).trials if t.state.name == "COMPLETE"])

    def q(v, p):
        return round(1000 * statistics.quantiles(v, n=100)[p - 1], 1) if len(v) > 1 else None

    return {"mode": mode, "workers": workers, "trials": done, "complete": done == workers * per_worker,
            "wall_s": round(wall, 2), "trials_per_s": round(done / wall, 1),
            "ask_ms_median": round(1000 * statistics.median(asks), 1), "ask_ms_p95": q(asks, 95),
            "tell_ms_median": round(1000 * statistics.median(tells), 1), "tell_ms_p95": q(tells, 95),
            "peak_connections": peak}


def table(rows: list[dict]) -> str:
    lines = ["| storage | workers | trials | trials/s | ask ms (median / p95) | tell ms (median / p95) "
             "| peak PostgreSQL connections |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'PostgreSQL direct' if r['mode'] == 'direct' else 'study server (gRPC proxy)'} | {r['workers']} | "
                     f"{r['trials']}{'' if r['complete'] else ' (time limit)'} | {r['trials_per_s']} | "
                     f"{r['ask_ms_median']} / {r['ask_ms_p95']} | {r['tell_ms_median']} / {r['tell_ms_p95']} | "
                     f"{r['peak_connections']} |")
    return "\n".join(lines)


@click.command()
@click.option("--out", default="benchmarks/results/study_scale.json", show_default=True)
@click.option("--workers", "counts", multiple=True, type=int, default=(4, 16, 64), show_default=True)
@click.option("--per-worker", default=8, show_default=True, help="trials each worker runs")
@click.option("--sleep", default=0.1, show_default=True, help="seconds of 'work' per trial")
@click.option("--limit-s", default=60.0, show_default=True, help="time limit per configuration")
def main(out, counts, per_worker, sleep, limit_s):
    import platform

    from benchmarks.postgres import Postgres

    rows = []
    with Postgres(max_connections=400) as pg, tempfile.TemporaryDirectory() as tmp:
        for workers in counts:
            for mode in ("direct", "proxy"):  # interleaved per worker count
                rows.append(_one(pg, mode, workers, per_worker, sleep, limit_s, Path(tmp)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{__import__('os').cpu_count()} cores", "per_worker": per_worker, "sleep_s": sleep, "rows": rows}
    Path(out).write_text(json.dumps(result, indent=1))
    print(table(rows))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        a = sys.argv[2:]
        _worker(a[0], a[1], a[2], int(a[3]), float(a[4]), float(a[5]), a[6])
    else:
        main()
