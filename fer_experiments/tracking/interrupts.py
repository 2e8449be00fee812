"""A stop signal that library code cannot lose.

SIGTERM (and, in `tune`, SIGINT) becomes a KeyboardInterrupt in the main thread (`interrupt`: the
handlers of `MlflowTracker.run` and `studies.workers.stop_signals`). Raised wherever the main thread
happens to be, library code can lose it. Inside a garbage-collection callback (JAX registers one,
run at nearly every collection) or a `__del__`, Python prints "Exception ignored in …" and drops it;
a bare `except:` drops it too, or turns it into another error (Keras's TensorFlow `ops.shape` does,
while a train step is traced: the trial fails with a TypeError). The process then trains on as if
never told to stop: a `tune` worker finishes its trial, then runs the next ones.

So a stop is recorded, and raised only where nothing can lose it:
- inside a Keras `fit` that reports through `epochs.EpochMetrics` (`defer_inside`), before its next
  batch (`check`; training's Python code is full of tracing and cleanup that may lose it);
- inside a GC callback or a finaliser, as soon as it is left;
- anywhere else, at once, as before.
Re-delivery is a 0.5 s SIGALRM timer while the main thread stays in such a place (bounded: it
raises as soon as the place is left, even where no `check` comes). Places the frame test does not
know (a weakref callback, a C finaliser) are caught by `sys.unraisablehook`: a stop Python reports
as ignored there is not counted as raised, and is tried again by the same timer. `check` also raises a stop whose
first raise was lost all the same (after each trial of a study: `studies.workers.honour_stop`). A
stop is forgotten when the command or run that installed the handler is over (`scope`).
"""
from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
import weakref
from typing import NoReturn

RETRY_S = 0.5  # how soon a deferred stop is tried again (a batch's `check` usually comes first)

_pending: list[str] = []  # the message of the KeyboardInterrupt a stop signal asked for, while its scope lasts
_state = {"depth": 0, "raised": False, "alarm": None, "hook": None}  # nested scopes; raised once; previous handlers
_defer_codes: set = set()  # code objects (Keras `fit`s with batch checks) inside which a stop waits for `check`
_FINALIZER_CODES = {weakref.finalize.__call__.__code__}


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


def defer_inside(code) -> None:
    """Inside `code` (a Keras `fit` whose batches call `check`), a stop waits for `check` (or for `fit`
    to be left, should no batch come)."""
    _defer_codes.add(code)


def _unsafe(frame) -> bool:
    """Whether a KeyboardInterrupt raised in `frame` may be lost: inside a GC callback or finaliser
    (Python ignores what they raise), or inside a `fit` that calls `check` before each batch."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code in _defer_codes or code in callbacks or code in _FINALIZER_CODES or code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _raise() -> NoReturn:
    _state["raised"] = True
    signal.setitimer(signal.ITIMER_REAL, 0)
    raise KeyboardInterrupt(_pending[0])


def _retry() -> None:
    if _state["alarm"] is None:
        _state["alarm"] = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, RETRY_S)


def _on_unraisable(unraisable) -> None:
    """A stop raised where Python ignores exceptions (it calls this instead): not lost, tried again."""
    error = unraisable.exc_value
    if isinstance(error, KeyboardInterrupt) and _pending and error.args == (_pending[0],) and _main():
        _state["raised"] = False
        _retry()
        return
    (_state["hook"] or sys.__unraisablehook__)(unraisable)


def _watch_unraisable() -> None:
    if sys.unraisablehook is not _on_unraisable:
        _state["hook"] = sys.unraisablehook
        sys.unraisablehook = _on_unraisable


def _deliver(frame) -> None:
    if _state["raised"] or not _pending:
        return
    _watch_unraisable()
    if not _unsafe(frame):
        _raise()
    _retry()


def _on_alarm(signum, frame) -> None:
    _deliver(frame)


def interrupt(message: str, frame) -> None:
    """What a stop-signal handler does (`frame`: the one it interrupted): record the stop, and raise
    it as a KeyboardInterrupt now, or as soon as nothing can lose it (the module docstring). Each
    signal asks for one raise (a handler that ignores repeats does so before calling this)."""
    if not _pending:
        _pending.append(message)
    _state["raised"] = False
    if not _main() or not _state["depth"]:
        raise KeyboardInterrupt(message)  # no scope to deliver it from later: at once, as ever
    _deliver(frame)


def check() -> None:
    """A safe point: raise the stop a signal asked for, if there is one (also one whose first raise
    was lost). Only in the main thread, the only one signals are handled in."""
    if _pending and _main():
        _raise()


@contextlib.contextmanager
def scope():
    """While a stop-signal handler is installed (main thread): a stop asked for inside is forgotten
    once the outermost scope ends (what was stopped is over; a next command in this process starts
    afresh)."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if not _state["depth"]:
            _pending.clear()
            _state["raised"] = False
            if _state["alarm"] is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, _state["alarm"])
                _state["alarm"] = None
            if sys.unraisablehook is _on_unraisable:
                sys.unraisablehook = _state["hook"] or sys.__unraisablehook__
            _state["hook"] = None
