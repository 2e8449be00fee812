"""The project's error contract.

`UserError` is a mistake the user can fix (a bad path, value, model name, URI, data file, storage):
its message is one line naming the problem and the fix, and `fer-exp` prints it with exit code 2.
Every other exception is a bug and keeps its traceback (exit 1). Subclasses say where it came from.
It derives from ValueError so that library callers catching ValueError keep working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Something the user gave is wrong; one line naming it and the fix."""


def read_only_store(uri: str) -> str:
    """The one message for a tracking store that refuses writes (checked up front, or met on the way)."""
    return f"the tracking store is read-only ({uri}): make it writable, or set MLFLOW_TRACKING_URI to a store you can write"
