"""Where an Optuna study lives: a journal file under mlruns/ by default, or any SQLAlchemy URL.

The journal file (JournalFileBackend) is safe for several processes on one machine, which SQLite
is not. RDB storages (PostgreSQL, MySQL) serve many machines and get heartbeats: a worker that dies
mid-trial has its trial failed and retried by the next worker.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..config import ConfigError

DEFAULT_JOURNAL = Path("mlruns") / "optuna" / "journal.log"
HEARTBEAT_S = int(os.environ.get("FER_HEARTBEAT_S", "20"))  # seconds between a worker's heartbeats
MAX_RETRY = 2


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for tags and messages (SQLAlchemy's own rendering)."""
    if "://" not in (url or ""):
        return url or ""  # a journal file path, or nothing
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy can parse: show none of it
        return "<unparsable storage URL>"


def _retry_and_record(on_fail):
    """Mark the dead trial's MLflow run FAILED, then enqueue a retry with the same params."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study, trial):
        on_fail(study, trial)
        retry(study, trial)
    return callback


def open_storage(url: str, on_fail):
    """A storage object, or a one-line ConfigError if it cannot be reached."""
    if not url or url.startswith("journal:") or url.endswith(".log"):
        path = Path(url.removeprefix("journal:").removeprefix("//") if url else DEFAULT_JOURNAL)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if "://" not in url:
        raise ConfigError(f"storage '{url}' is not a SQLAlchemy URL or journal file: use e.g. "
                          f"postgresql://user@host/db (password in PGPASSWORD or ~/.pgpass), journal:path/to/file.log, or leave it empty")
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's wording, and documented
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_S,
                                  grace_period=3 * HEARTBEAT_S,
                                  heartbeat_stale_trial_callback=_retry_and_record(on_fail))
        except ImportError as exc:  # Optuna's "Failed to import DB access module": the URL's driver is missing
            raise ConfigError(f"storage {mask_url(url)} needs the database driver {_missing(exc)}, which is not "
                              f"installed: pip install {_driver_package(url)}, or name an installed driver in the "
                              f"URL (postgresql:// uses psycopg 3, installed with fer_experiments)") from None
        except Exception as exc:
            text = str(exc)
            # Workers starting together on an empty database race to create Optuna's tables:
            # the loser sees a duplicate-key error; the tables exist by then, so try again.
            if ("UniqueViolation" in text or "already exists" in text) and attempt < 4:
                time.sleep(1 + attempt)
                continue
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            raise ConfigError(f"storage {mask_url(url)} is unreachable ({first}): start the database or fix the URL") from None


DRIVER_PACKAGES = {"postgresql": "'psycopg[binary]'", "postgresql+psycopg2": "psycopg2-binary",
                   "mysql": "mysqlclient", "mysql+pymysql": "pymysql"}


def _missing(exc: ImportError) -> str:
    cause = exc.__cause__ or exc
    return f"'{cause.name}'" if getattr(cause, "name", None) else "module"


def _driver_package(url: str) -> str:
    scheme = url.split("://", 1)[0]
    return DRIVER_PACKAGES.get(scheme, f"the driver for {scheme}://")


def password_in(url: str) -> bool:
    """Whether a storage URL carries a password (which `mlflow run -P storage=…` has then logged in clear)."""
    if "://" not in (url or ""):
        return False
    try:
        return make_url(url).password is not None
    except ArgumentError:
        return False


def requeue_dead_local_trials(study, on_fail) -> int:
    """Journal files have no heartbeat: fail and retry RUNNING trials of dead workers on this host."""
    if not isinstance(study._storage, JournalStorage):
        return 0
    host, count = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            _retry_and_record(on_fail)(study, study._storage.get_trial(trial._trial_id))
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
