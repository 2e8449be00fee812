"""Where an Optuna study lives: a journal file under mlruns/ by default, or any SQLAlchemy URL.

The journal file (JournalFileBackend) is safe for several processes on one machine, which SQLite
is not, and on a shared file system for several machines; `grpc://HOST:PORT` is a study server
(`grpc_proxy`) in front of a database, for more workers than it has connections. All get
heartbeats: RDB storages (PostgreSQL, MySQL) Optuna's own, the journal and the proxy a lease per
running trial (`leases`). A worker that
dies mid-trial has its trial failed (its MLflow run FAILED) and retried with the same params by a
live worker.
"""
from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileOpenLock
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..config import ConfigError
from .journal import LEASE, LeasedJournalStorage, RepairingFileBackend

DEFAULT_JOURNAL = Path("mlruns") / "optuna" / "journal.log"
HEARTBEAT_S = int(os.environ.get("FER_HEARTBEAT_S", "20"))  # seconds between a worker's heartbeats
GRACE_S = 3 * HEARTBEAT_S  # a trial whose heartbeat is this old is its dead worker's: failed and retried
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
    """Mark the dead trial's MLflow run FAILED, then enqueue a retry with the same params (not the
    dead worker's lease: the retry's worker writes its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study, trial):
        on_fail(study, trial)
        trial = copy.deepcopy(trial)
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != LEASE}
        retry(study, trial)
    return callback


def open_storage(url: str, on_fail):
    """A storage object, or a one-line ConfigError if it cannot be reached."""
    if not url or url.startswith("journal:") or url.endswith(".log"):
        path = Path(url.removeprefix("journal:").removeprefix("//") if url else DEFAULT_JOURNAL)
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = RepairingFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return LeasedJournalStorage(backend, interval=HEARTBEAT_S, grace=GRACE_S, on_stale=_retry_and_record(on_fail))
    if url.startswith("grpc://"):  # a study server (`fer-exp study-server`) in front of a database
        from .grpc_proxy import LeasedGrpcStorage

        return LeasedGrpcStorage(url, interval=HEARTBEAT_S, grace=GRACE_S, on_stale=_retry_and_record(on_fail))
    if "://" not in url:
        raise ConfigError(f"storage '{url}' is not a SQLAlchemy URL or journal file: use e.g. "
                          f"postgresql://user@host/db (password in PGPASSWORD or ~/.pgpass), journal:path/to/file.log, "
                          f"or leave it empty")
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's wording, and documented
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_S,
                                  grace_period=GRACE_S,
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


def open_rdb(url: str):
    """The database a study server (`grpc_proxy`) serves: an RDB storage, or a one-line ConfigError."""
    if "://" not in (url or "") or url.startswith("grpc://"):
        raise ConfigError(f"study-server --storage {mask_url(url) or 'nothing'} is not a database URL: pass a "
                          f"SQLAlchemy URL such as postgresql://user@host/db (the gRPC proxy serves RDB storages "
                          f"only, not a journal file or another proxy)")
    return open_storage(url, on_fail=lambda study, trial: None)  # heartbeats are the workers' leases here


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
