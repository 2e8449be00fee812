"""A stop signal that lands where Python drops exceptions (a garbage-collection callback, as JAX
registers one) is raised as soon as that place is left, not lost; one that lands elsewhere is raised
at once, as ever."""
from __future__ import annotations

import gc
import os
import signal
import time
import weakref

import pytest

from fer_experiments.tracking import interrupts


@pytest.fixture
def stop_handler():
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: interrupts.interrupt("stop", frame))
    try:
        with interrupts.scope():
            yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _wait_for_the_stop(seconds: float = 3.0) -> float:
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="stop"):
        while time.monotonic() - began < seconds:
            time.sleep(0.01)
    return time.monotonic() - began


def test_a_stop_inside_a_gc_callback_is_raised_after_it_not_lost(stop_handler):
    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs here, inside the callback
            time.sleep(0.05)

    fired: list = []
    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert fired
    assert _wait_for_the_stop() < 2.0  # re-delivered within a retry or two, after the callback


def test_a_stop_inside_a_weakref_callback_python_ignores_is_raised_after_it(stop_handler):
    class Thing:
        pass

    def callback(ref):
        fired.append(1)
        os.kill(os.getpid(), signal.SIGUSR1)  # raised here at once: Python reports it as ignored
        time.sleep(0.05)

    fired: list = []
    thing = Thing()
    ref = weakref.ref(thing, callback)
    del thing  # the callback runs now
    assert fired and ref() is None
    assert _wait_for_the_stop() < 2.0


def test_a_stop_elsewhere_is_raised_at_once(stop_handler):
    with pytest.raises(KeyboardInterrupt, match="stop"):
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(1)
