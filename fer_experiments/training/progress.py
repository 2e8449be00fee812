"""One console line per step of a run's end-of-run work (``  evaluating validation … 3.2 s``): after the
last epoch, evaluation, figures and logging the model take tens of seconds that should not pass in
silence. Plain `print` to stdout, where Keras prints the epochs: no click, no tracking.
"""
from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def step(label: str, echo: bool = True):
    """Say `label` as the block starts and its seconds when it ends, on one line; nothing if not `echo`
    (Optuna trials and benchmarks train with verbose=0 and stay quiet)."""
    if not echo:
        yield
        return
    print(f"  {label} …", end="", flush=True)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        print(f" failed after {time.perf_counter() - start:.1f} s", flush=True)
        raise
    print(f" {time.perf_counter() - start:.1f} s", flush=True)


def steps(echo: bool):
    """`step` with `echo` fixed: what `evaluation.split.evaluate_split` takes to time its parts."""
    return lambda label: step(label, echo)

