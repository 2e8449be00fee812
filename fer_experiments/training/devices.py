"""The machine a run trains on: backend, device kind and count, and data parallelism over N devices.

Several devices are used through Keras 3's built-in `keras.distribution.DataParallel` (JAX backend):
the model is replicated, each global batch is split across the devices, gradients are all-reduced.
Over several processes (hosts, `processes`) the devices are every process's, and each process feeds
its own shard of the batch.
"""
from __future__ import annotations

import contextlib
import os

import keras

from ..errors import UserError
from . import processes

ACCELERATORS = ("gpu", "tpu", "cuda")


def _all() -> list[str]:
    """Device ids as Keras names them ("cpu:0", "gpu:1", …)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return [f"gpu:{i}" for i in range(len(gpus))] or ["cpu:0"]
    if backend == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu:0"]
    return ["cpu:0"]


def describe() -> dict:
    """What every run records: backend, device kind (cpu | gpu | tpu), count, and the accelerator's name."""
    ids = _all()
    kind = ids[0].split(":")[0].replace("cuda", "gpu")
    info = {"keras_backend": keras.backend.backend(), "device_kind": kind, "device_count": len(ids)}
    if kind != "cpu" and keras.backend.backend() == "jax":
        import jax

        info["device_name"] = jax.devices()[0].device_kind
    return info


def resolve(devices: int) -> int:
    """``devices=0`` (auto) → every accelerator where there are several, else 1; an explicit N is
    checked against what is there."""
    ids = _all()
    accelerators = [d for d in ids if d.split(":")[0] in ACCELERATORS]
    if processes.count() > 1:  # one DataParallel over every process's devices
        if devices not in (0, len(ids)):
            raise UserError(f"devices={devices} but the {processes.count()} processes have {len(ids)} devices in "
                            f"all, and training over several processes uses every one: pass devices=0 (auto)")
        return len(ids)
    if devices == 0:
        return len(accelerators) if len(accelerators) > 1 and keras.backend.backend() == "jax" else 1
    if devices > 1 and keras.backend.backend() != "jax":
        raise UserError(f"devices={devices} needs the JAX backend (Keras's data parallelism is JAX-only): "
                        f"run with KERAS_BACKEND=jax, or devices=1")
    if devices > len(ids):
        hint = ("; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N virtual devices"
                if ids[0].startswith("cpu") else "")
        raise UserError(f"devices={devices} but this machine has {len(ids)} ({', '.join(ids)}): "
                        f"pass devices≤{len(ids)}{hint}")
    return devices


@contextlib.contextmanager
def data_parallel(n: int):
    """Inside, Keras distributes over the first `n` devices (nothing changes for n = 1). The
    distribution is always cleared on the way out: predicting, saving and logging happen on one
    device, where a batch of any size is allowed."""
    if n <= 1:
        yield
        return
    # Over several processes each feeds its own shard (`processes.shard`): Keras must not shard again.
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()[:n], auto_shard_dataset=processes.count() == 1))
    try:
        yield
    finally:
        keras.distribution.set_distribution(None)


def virtual_cpu_flags(n: int) -> dict:
    """Environment for a process with `n` virtual CPU devices (tests of data parallelism without GPUs)."""
    flags = os.environ.get("XLA_FLAGS", "")
    return {"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={n}".strip(), "KERAS_BACKEND": "jax"}
