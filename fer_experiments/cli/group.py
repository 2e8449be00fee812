"""What every `fer-exp` command shares: the error contract, option spellings, and the options made
from `TrainConfig` (train and tune take the same ones).

The error contract (`errors.UserError`): the project's own user errors, MLflow's "does not exist" and
a tracking server's refusal become one line and exit 2; anything else is a bug and keeps its
traceback (exit 1). FER_DEBUG=1 shows the traceback of the one-line errors too.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import sys
import traceback

import click

from .. import config as cfgmod
from ..errors import UserError, read_only_store

# MLflow's codes for a thing the user named that is not there, or a server that refused the user.
# Not INVALID_PARAMETER_VALUE: MLflow also raises it for its own misuse ("Changing param values is
# not allowed"), which is a bug here and must keep its traceback.
MLFLOW_USER_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "UNAUTHENTICATED", "PERMISSION_DENIED")


# A full or read-only disk under the store is the user's to fix, not a bug: one line naming the fix.
STORE_FULL = ("database or disk is full", "No space left on device")
STORE_READ_ONLY = ("attempt to write a readonly database", "Read-only file system")


def store_problem(exc: BaseException) -> str:
    """The one-line message for a tracking store (or its disk) that refuses writes, else ''."""
    text = f"{exc} {exc.__cause__ or ''}"
    store = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    where = getattr(exc, "filename", None) or f"the tracking store ({store}: its database or artifacts)"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or any(s in text for s in STORE_FULL):
        return (f"the disk is full writing {where}: free space there (or set MLFLOW_TRACKING_URI to a store on "
                f"another disk), then rerun")
    if isinstance(exc, OSError) and exc.errno == errno.EROFS or any(s in text for s in STORE_READ_ONLY):
        return read_only_store(store)
    return ""


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, UserError) or store_problem(exc):
        return True
    # An MlflowException (e.g. a models:/ URI that names nothing) exists only where MLflow was imported:
    # importing it here (seconds) would slow `train --help`, whose exit passes through here too.
    found = sys.modules.get("mlflow.exceptions")
    return found is not None and isinstance(exc, found.MlflowException) and exc.error_code in MLFLOW_USER_ERRORS


def normalize(token: str) -> str:
    """Option names are matched with "_" read as "-": `--n_trials` is `--n-trials` (the spelling
    MLflow uses when it forwards `-P n_trials=6`)."""
    return token.replace("_", "-")


class FerGroup(click.Group):
    """`fer-exp` and its subgroups: user errors are one line and exit 2 (the error contract above)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", {}).update(help_option_names=["-h", "--help"],
                                                         token_normalize_func=normalize)
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option value or name, from click: one line as well
            where = f"{exc.ctx.command_path} --help" if exc.ctx else f"{ctx.command_path} --help"
            click.echo(f"error: {exc.format_message().rstrip('.')} (see {where})", err=True)
            ctx.exit(2)
        except Exception as exc:
            if not is_user_error(exc) or os.environ.get("FER_DEBUG"):
                if _several_processes():  # the traceback, then out: the peers' collectives then fail at once
                    traceback.print_exc()
                    _leave_the_other_processes(1)
                raise
            click.echo(f"error: {store_problem(exc) or (str(exc).strip().splitlines() or [repr(exc)])[0]}", err=True)
            _leave_the_other_processes(2)
            ctx.exit(2)


def _several_processes() -> bool:
    processes = sys.modules.get("fer_experiments.training.processes")  # imported by `train` only
    return processes is not None and processes.started() and processes.count() > 1


def _leave_the_other_processes(code: int) -> None:
    """One of several training processes that failed exits now: JAX's shutdown would wait for the
    others (up to an hour) and then print pages of C++ log, while the peers' own collectives fail at
    once when this process is gone (`training.processes`)."""
    if _several_processes():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Option(click.Option):
    """An option whose older spellings (`aliases`) are still accepted but not shown."""

    def __init__(self, param_decls, *, aliases=(), **kwargs):
        self.shown = [d for d in param_decls if d.startswith("-")]
        super().__init__([*param_decls, *aliases], **kwargs)

    def get_help_record(self, ctx):
        opts, self.opts = self.opts, [o for o in self.opts if o in self.shown]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


def option(*decls, **kwargs):
    return click.option(*decls, cls=Option, **kwargs)


def config_options(defaults: dict | None = None):
    """One option per TrainConfig field (`--batch-size`, …) with the field's help and choices
    (`config.help_text`: no Keras import, so `train --help` is quick); None = not given, so a preset
    (and `defaults`, e.g. tune's epochs per trial) can fill it. Shown defaults are TrainConfig's."""
    shown = {f.name: getattr(cfgmod.TrainConfig(), f.name) for f in dataclasses.fields(cfgmod.TrainConfig)}
    shown.update(defaults or {})

    def decorate(fn):
        for f in reversed(dataclasses.fields(cfgmod.TrainConfig)):
            default = shown[f.name]
            suffix = f" [default: {default if default is not None else 'model default'}]"
            fn = option(f"--{f.name.replace('_', '-')}", f.name, default=None, metavar=f.type.split(" ")[0].upper(),
                        help=cfgmod.help_text(f.name) + suffix)(fn)
        return fn
    return decorate


def preset_option(fn):
    return option("--preset", "preset", aliases=("--experiment",), default=None,
                  help="named preset in experiments/ (or a .yaml path); explicit options override it")(fn)


def mlflow_experiment_option(help_text: str):
    return option("--mlflow-experiment", default=None, help=help_text)


def given(preset: str | None) -> str | None:
    """A preset name, or None for "none" / "" (MLproject's default)."""
    return None if preset in (None, "", "none") else preset
