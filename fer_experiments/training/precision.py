"""Numeric precision of training: float32 or Keras mixed precision, chosen per machine.

``precision=auto`` resolves, once per run, to ``mixed_bfloat16`` where the hardware multiplies
bfloat16 natively — a CPU with AVX512-BF16 or AMX-BF16 (oneDNN then runs convolutions and matrix
products in bf16; the speed-up per model is in benchmarks/results, `python -m benchmarks.run --part
step`) — and to ``float32`` elsewhere (emulated bf16 is slower than float32); on an accelerator to
``mixed_bfloat16`` (`resolve`). Variables
stay float32 under mixed precision; the model that is evaluated, saved and logged is always a
float32 copy, so predict/serve/export never see bf16.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import keras

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (Linux /proc/cpuinfo); empty where that file does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve(precision: str) -> str:
    """``auto`` → the fastest precision this machine does natively; anything else is kept.

    GPU/TPU: ``mixed_bfloat16`` (native on TPUs and on NVIDIA GPUs from Ampere on; pass
    ``mixed_float16`` on older GPUs). CPU on TensorFlow: bf16 where the CPU has it (oneDNN). CPU on
    JAX: float32 — XLA's CPU backend gains nothing from bf16 (`python -m benchmarks.run --part
    backends`, results in benchmarks/results)."""
    if precision != "auto":
        return precision
    from . import devices

    if devices.describe()["device_kind"] != "cpu":
        return "mixed_bfloat16"
    if keras.backend.backend() != "tensorflow":
        return "float32"
    return "mixed_bfloat16" if any(flag in cpu_flags() for flag in BF16_CPU_FLAGS) else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Layers built inside use the Keras dtype policy `name`; the previous global policy comes back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
