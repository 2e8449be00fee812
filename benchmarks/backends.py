"""Benchmark part `backends`: the trainer's training step on TensorFlow and on JAX, per precision.

The Keras backend is fixed per process (``KERAS_BACKEND`` before ``import keras``), so each backend's
arms run in a worker process of that backend (``python -m benchmarks.backends --worker --arm …``),
started once and kept for the whole part. The arms:

    tensorflow_float32, jax_float32, tensorflow_mixed_bfloat16, jax_mixed_bfloat16,
    jax_float32_uncompiled (JAX with ``jit_compile=false``: Keras's op-by-op step)

(precision is per model, not per process: one process per backend, not per arm, saves three
start-ups and JAX's per-process model-building cost, which made the test several times longer).
For each arm the worker builds the model as the trainer does (`training.build_model`: the network
with its augmenter; `make_optimizer`, `loss_and_targets`; compiled with `training.jit_compile(cfg)`,
i.e. XLA on JAX, Keras's own rule on TensorFlow), warms it up on the batches (tracing, compilation),
says it is ready, and then, on each request, fits that arm's model for one epoch over the same
in-memory batches of real training images (the preset's batch size, no shuffling) and prints one
JSON line: images per second from the epoch's start to its end (`fit`'s own set-up off the clock,
as in the `step` part), the clock stopped only after every weight has been read back, so JAX's
asynchronous dispatch cannot stop it early. One arm is timed at a time, the other process idling;
measurements are interleaved in rounds — [TF f32, JAX f32, TF bf16, JAX bf16, JAX uncompiled] ×
`repeats` — so a change in the machine's speed hits every arm alike. Kept: every round's figure,
each arm's median and spread, and TF ÷ JAX per precision, judged by `validity` (and per round).
Every wait on a worker has a time limit; a worker that misses it is killed and the part fails.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import click
import numpy as np

from . import validity

# (name, backend, precision, jit_compile setting) in the order of one round.
ARMS = (("tensorflow_float32", "tensorflow", "float32", "auto"),
        ("jax_float32", "jax", "float32", "auto"),
        ("tensorflow_mixed_bfloat16", "tensorflow", "mixed_bfloat16", "auto"),
        ("jax_mixed_bfloat16", "jax", "mixed_bfloat16", "auto"),
        ("jax_float32_uncompiled", "jax", "float32", "false"))
PRECISIONS = ("float32", "mixed_bfloat16")
ROOT = Path(__file__).resolve().parents[1]


class WorkerError(RuntimeError):
    pass


class _Worker:
    """One backend's process: requests on its stdin, one JSON line per reply on its stdout, its stderr in a log file."""

    def __init__(self, backend: str, arms: list[str], batches: Path, preset: str, log: Path):
        self.name, self.log_path = backend, log
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.backends", "--worker", "--batches", str(batches), "--preset", preset,
             *(f"--arm={a}" for a in arms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1, cwd=ROOT, env=env)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self._lines.put(line)
        self._lines.put(None)  # the process closed its stdout: it has ended

    def reply(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WorkerError(f"worker {self.name} gave no answer within {timeout:.0f} s (killed){self._tail()}") from None
        if line is None:
            self.proc.wait(timeout=30)
            raise WorkerError(f"worker {self.name} ended (exit code {self.proc.returncode}){self._tail()}")
        return json.loads(line)

    def ask(self, request: str, timeout: float) -> dict:
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self.reply(timeout)

    def end(self) -> None:
        """End of requests: the worker exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self, timeout: float = 60) -> None:
        try:
            self.end()
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def _tail(self) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip()
        return f"; its stderr ends:\n{text[-3000:]}" if text else ""


def _versions() -> dict:
    """Installed versions, read without importing (TensorFlow may be installed as tensorflow-cpu)."""
    out = {}
    for name, distributions in (("keras", ("keras",)), ("tensorflow", ("tensorflow", "tensorflow-cpu")),
                                ("jax", ("jax",)), ("jaxlib", ("jaxlib",))):
        out[name] = None
        for dist in distributions:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                pass
    return out


def measure(data: str, *, steps: int = 12, repeats: int = 3, preset: str = "custom_aug",
            start_timeout: float = 600, step_timeout: float = 300) -> dict:
    """`steps` batches (of the preset's batch size) of real training images, the first ones of
    `data`'s train split, timed per measurement; `repeats` interleaved rounds. `preset`: a name in
    experiments/ or a .yaml path. `start_timeout`: seconds for the workers to start and warm up;
    `step_timeout`: seconds for one measurement."""
    from fer_experiments import data as fer_data
    from fer_experiments.config import TrainConfig, load_experiment
    from fer_experiments.training.precision import BF16_CPU_FLAGS, cpu_flags

    batch = load_experiment(preset).get("batch_size", TrainConfig.batch_size)  # a bad preset fails before any process
    train = fer_data.load_dataset(data).splits["train"]
    n = steps * batch
    if len(train.y) < n:
        raise click.UsageError(f"{data} has {len(train.y)} training images, fewer than {steps} batches of {batch}")
    tmp = Path(tempfile.mkdtemp(prefix="fer-backends-"))
    workers: dict[str, _Worker] = {}
    try:
        batches = tmp / "batches.npz"
        np.savez(batches, x=train.x[:n], y=train.y[:n])
        for backend in dict.fromkeys(a[1] for a in ARMS):  # both start together: start-up and warm-up are off the clock
            workers[backend] = _Worker(backend, [a[0] for a in ARMS if a[1] == backend], batches, preset,
                                       tmp / f"{backend}.log")
        started = time.monotonic()
        info = {}
        for w in workers.values():
            info.update(w.reply(max(1.0, started + start_timeout - time.monotonic()))["arms"])
            click.echo(f"backends: {w.name} ready after {time.monotonic() - started:.0f} s", err=True)
        rounds = {a[0]: [] for a in ARMS}
        for r in range(repeats):
            for name, backend, _, _ in ARMS:
                reply = workers[backend].ask(f"time {name}", step_timeout)
                rounds[name].append(reply["images_per_second"])
            click.echo(f"backends: round {r + 1}/{repeats} at {time.monotonic() - started:.0f} s: "
                       + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rounds.items()) + " img/s", err=True)
    finally:
        for w in workers.values():
            w.end()
        for w in workers.values():
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)
    flags = cpu_flags()
    arms = {}
    for name, backend, precision, jit in ARMS:
        arms[name] = {"backend": backend, "precision": precision, "jit_compile": jit, **info[name],  # as the worker built it
                      "ips": validity.summarize(rounds[name])}

    def ratio(a: str, b: str) -> dict:
        return {**validity.ab(arms[a]["ips"], arms[b]["ips"], names=(a, b)),
                "per_round": [x / y for x, y in zip(rounds[a], rounds[b])]}

    ratios = {p: ratio(f"tensorflow_{p}", f"jax_{p}") for p in PRECISIONS}
    ratios["jax_compiled_over_uncompiled"] = ratio("jax_float32", "jax_float32_uncompiled")
    command = (f"python -m benchmarks.run --data {data} --part backends --step-batches {steps} --repeats {repeats}"
               + ("" if preset == "custom_aug" else f" --step-model {preset}"))
    return {"preset": preset, "steps": steps, "batch_size": batch, "images_timed": n, "repeats": repeats,
            "rules": validity.RULES, "order": [a[0] for a in ARMS], "arms": arms, "ratios": ratios, "versions": _versions(),
            "cpu_model": _cpu_model(), "cpu_flags": sorted(flags), "bf16_native": any(f in flags for f in BF16_CPU_FLAGS),
            "command": command}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _worker(batches: str, preset: str, arm_names: tuple[str, ...]) -> None:
    """One backend's arms, in a process whose KERAS_BACKEND is already set: build and warm up each,
    say so, then time the arm named in each request ("time <arm>"); end of input ends the process."""
    import keras

    from fer_experiments import training
    from fer_experiments.config import build_config
    from fer_experiments.training import devices

    with np.load(batches) as f:
        x, labels = f["x"].astype("float32"), f["y"]
    epochs, info = {}, {}
    for name, backend, precision, jit in (a for a in ARMS if a[0] in arm_names):
        if backend != keras.backend.backend():
            raise click.UsageError(f"arm {name} needs KERAS_BACKEND={backend}, not {keras.backend.backend()}")
        cfg = build_config(preset, data=batches, precision=precision, jit_compile=jit).resolved()
        keras.utils.set_random_seed(cfg.seed)
        loss, targets = training.loss_and_targets(cfg)
        net, _ = training.build_model(cfg)
        net.compile(optimizer=training.make_optimizer(cfg, len(x) // cfg.batch_size), loss=loss, metrics=["accuracy"],
                    jit_compile=training.jit_compile(cfg))
        epochs[name] = _epoch(net, x, targets(labels), cfg.batch_size)
        warmup = epochs[name]()  # tracing and compilation, and a first pass over the data
        inner = net.layers[-1] if isinstance(net.layers[-1], keras.Model) else net  # the augmenter stays float32
        info[name] = {"jit_compile_used": net.jit_compile, "warmup_s": warmup, "dtype_policy": inner.dtype_policy.name,
                      "batch_size": cfg.batch_size, "device_kind": devices.describe()["device_kind"]}
    _say({"ready": True, "arms": info})
    for request in sys.stdin:
        what, _, name = request.strip().partition(" ")
        if what == "time":
            seconds = epochs[name]()
            _say({"arm": name, "images_per_second": len(x) / seconds, "seconds": seconds})
    # End of requests: nothing is left to save, and TensorFlow's and JAX's interpreter teardown takes seconds.
    sys.stderr.flush()
    os._exit(0)


def _epoch(net, x, y, batch_size: int):
    """A closure fitting `net` for one epoch over the batches, returning the epoch's seconds."""
    import keras

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            for v in self.model.trainable_variables:  # the last step's updates are done, on any backend
                keras.ops.convert_to_numpy(v)
            self.seconds = time.perf_counter() - self.start

    def run() -> float:
        clock = Clock()
        net.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
        return clock.seconds

    return run


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@click.command()
@click.option("--worker", is_flag=True, required=True, help="run arms of this process's backend (started by `measure`)")
@click.option("--batches", required=True, help=".npz with x (uint8 faces) and y (labels), whole batches")
@click.option("--preset", default="custom_aug", show_default=True)
@click.option("--arm", "arms", multiple=True, required=True, type=click.Choice([a[0] for a in ARMS]))
def main(worker, batches, preset, arms):
    _worker(batches, preset, arms)


if __name__ == "__main__":
    main()
